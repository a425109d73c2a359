"""The regex reading of everyday From fields (checks/dmarc_from.simple_reading) gives exactly
what the stdlib parser's reading gives, on generated fields of those shapes and near misses."""

from hypothesis import given, settings, strategies as st

from aclmilter.checks.dmarc_from import author_domain, parsed_reading, simple_reading

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
atom = st.text(alphabet=ATEXT, min_size=1, max_size=6)
dot_atom = st.lists(atom, min_size=1, max_size=3).map(".".join)
label = st.text(alphabet="abcXY09-", min_size=1, max_size=8)
domain = st.lists(label, min_size=2, max_size=4).map(".".join)
phrase = st.lists(atom, min_size=1, max_size=3).map(" ".join)
QTEXT = " !#$%&'()*+,-./0123456789:;<=>?ABZ[]^_`az{|}~"
quoted = st.text(alphabet=QTEXT, min_size=1, max_size=10).map(lambda t: f'"{t}"')


def fields(near_misses: bool) -> st.SearchStrategy[str]:
    """Everyday shapes; with `near_misses`, some with one character the regexes do not accept."""
    @st.composite
    def draw_field(draw: st.DrawFn) -> str:
        address = f"{draw(dot_atom)}@{draw(domain)}"
        shape = draw(st.sampled_from(["bare", "angle", "phrase", "quoted"]))
        spaces = " " * draw(st.integers(0, 2))
        value = {"bare": address, "angle": f"<{address}>",
                 "phrase": f"{draw(phrase)}{spaces}<{address}>",
                 "quoted": f"{draw(quoted)}{spaces}<{address}>"}[shape]
        if near_misses and draw(st.booleans()):
            where = draw(st.integers(0, len(value)))
            odd = draw(st.sampled_from(list('@."\\()<>,;:[] \t') + ["é", "\x00", "..", "-"]))
            value = value[:where] + odd + value[where:]
        return value.strip()
    return draw_field()


@settings(max_examples=1500, deadline=None)
@given(fields(near_misses=True))
def test_simple_reading_agrees_with_the_parser(raw: str) -> None:
    fast = simple_reading(raw)
    if raw and fast is not None:
        assert fast == parsed_reading(raw), raw


@settings(max_examples=300, deadline=None)
@given(fields(near_misses=False))
def test_everyday_shapes_take_the_fast_path(raw: str) -> None:
    # Proves the regexes match what they claim to (else the equality above tests nothing).
    assert simple_reading(raw) is not None, raw


def test_known_fields_read_the_same_both_ways() -> None:
    for raw in ["alice@Example.ORG", "Alice Doe <alice@example.org>", '"Doe, J" <j.d@x.org>',
                "<a.b+tag@mail.example.net>", "Name<a@b.example>", '"a@evil.example" <x@good.example>',
                "x <a@b>", "a@-bad-.example", "J. Doe <j@x.org>"]:
        fast = simple_reading(raw)
        assert fast is None or fast == parsed_reading(raw), raw
        assert author_domain([("From", raw)]) == parsed_reading(raw), raw
    assert simple_reading("Alice Doe <alice@example.org>") is not None
    assert simple_reading('"a@evil.example" <x@good.example>') is None   # second @: the parser decides


# Review 2026-12-07 (rev9): free text from the characters that matter to either reading
# (specials, white space, encoded-word markers, non-ASCII, surrogate escapes, folding), read
# whole by author_domain: the answer is the stdlib parser's for every field the patterns take.
PIECES = list(ATEXT) + list('@."\\()<>,;:[] \t') + ["é", "\x00", "=?utf-8?q?", "?=", "\udcc3", "\r\n ",
                                                    "\x7f", "\u00a0", "ß", "\uff41", "xn--", "a@b.example"]


ENDINGS = ["", " <a.b@c.example>", "<x@y.example>", "@d.example", '" <q@r.example>', "\\\" <s@t.example>"]


@settings(max_examples=2500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=16).map("".join), st.sampled_from(ENDINGS))
def test_author_domain_is_the_parsers_reading_on_any_text(text: str, ending: str) -> None:
    value = text + ending
    got = author_domain([("From", value)])
    unfolded = value.replace("\r\n ", " ").strip()
    if unfolded and simple_reading(unfolded) is not None:
        assert got == parsed_reading(unfolded), value
