"""Expansion items added for issue 22: the Exim specification's own examples, outcomes, syntax.

Each documented example is quoted from the Exim specification (chapter "String expansions"
and "Internationalisation"); tests/integration/test_exim_be.py compares the same items with
real `exim -be`.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from aclmilter import errors
from aclmilter.expand import parse
from aclmilter.expand.intl import imapfolder
from aclmilter.policy.loader import load_text

from .fakes_ctx import make_ctx


def ev(text: str) -> str:
    return parse(text).evaluate(make_ctx())


@pytest.mark.parametrize("text,want", [
    # spec 11.5 "imapfolder" / 60.2 "MDA operations"
    ("${imapfolder {Foo/Bar}}", "Foo.Bar"),
    ("${imapfolder {Foo/Bar}{.}{/}}", "Foo&AC8-Bar"),
    ("${imapfolder {Räksmörgås}}", "R&AOQ-ksm&APY-rg&AOU-s"),
    # spec "hash": "$hash{3}{monty}} yields jmg", "$hash{5}{monty}} yields monty"
    ("${hash{3}{monty}}", "jmg"),
    ("${hash{5}{monty}}", "monty"),
    ("${hash_3:monty}", "jmg"),
    # spec "quote": ${quote:ab"*"cd} becomes "ab\"*\"cd"
    ('${quote:ab"*"cd}', '"ab\\"*\\"cd"'),
    ("${quote:}", '""'),
    (r"${quote:a\nb}", '"a\\nb"'),
    # spec "listquote": doubles the separator; an empty string becomes one space
    ("${listquote{:}{a:b}}", "a::b"),
    ("${listquote{:}{}}", " "),
    ("${listcount:${listquote{:}{a:b}}:c}", "2"),
    # RFC 1321 / FIPS 180 test vectors; Exim: md5 lower case, SHA upper case
    ("${md5:abc}", "900150983cd24fb0d6963f7d28e17f72"),
    ("${sha1:abc}", "A9993E364706816ABA3E25717850C26C9CD0D89D"),
    ("${sha256:abc}", "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"),
    ("${h_3:monty}", "jmg"),                      # spec: "h" abbreviates the hash operator
    ("${sha2_384:abc}", "CB00753F45A35E8BB5A03D699AC65007272C32AB0EDED1631A8B605A43FF5BED"
                        "8086072BA1E7CC2358BAECA134C825A7"),
    # RFC 5890 / 3492 conversions
    ("${utf8_domain_to_alabel:Bücher.example}", "xn--bcher-kva.example"),
    ("${utf8_domain_from_alabel:xn--bcher-kva.example}", "bücher.example"),
    ("${utf8_localpart_to_alabel:jösé}", "xn--js-cja4c"),
    ("${utf8_localpart_from_alabel:xn--js-cja4c}", "jösé"),
    ("${utf8_domain_to_alabel:plain.example}", "plain.example"),
])
def test_documented_examples(text: str, want: str) -> None:
    assert ev(text) == want


@pytest.mark.parametrize("text,fragment", [
    ("${imapfolder{a.b}}", "illegal character '.'"),
    ("${imapfolder{a}{ab}}", "must be one character"),
    ("${hash{3}{63}{monty}}", "too big"),
    ("${hash{x}{monty}}", "is not a number"),
    ("${utf8_localpart_from_alabel:plain}", "bad alabel prefix"),
    ("${utf8_domain_from_alabel:xn--zz.example}", "Invalid input"),
    ("${sha2_224:abc}", "unrecognised sha2 variant"),
])
def test_failures(text: str, fragment: str) -> None:
    with pytest.raises(errors.ExpansionFailed, match=fragment):
        ev(text)


def test_imapfolder_separator_runs_and_specials() -> None:
    assert imapfolder("a///b") == "a.b"        # a run of separators is one "."
    assert imapfolder("/a") == "a" and imapfolder("//a") == ".a"   # one leading separator dropped
    assert imapfolder("x/") == "x"             # a trailing "." is dropped
    assert imapfolder("a&b") == "a&-b"
    assert imapfolder("a-b.c", "/", "-.") == "a&AC0-b&AC4-c"
    assert imapfolder("😀") == "&2D3eAA-"      # outside the BMP: a UTF-16 surrogate pair
    assert imapfolder("/") == ""


ACL_POLICY = """
acl:
  greet:
    - accept: {message: "hello $acl_arg1 ($acl_narg)"}
  quiet:
    - accept
  refuse:
    - deny: {message: "no $acl_arg2"}
  later:
    - defer: {message: "not now"}
  broken:
    - accept: {condition: "${if bool{maybe}}"}
  rcpt:
    - accept
"""


def _acl_ctx():
    ctx = make_ctx()
    ctx.policy = load_text(ACL_POLICY, "p.yaml")
    return ctx


@pytest.mark.parametrize("text,want", [
    ("${acl{greet}{world}}", "hello world (1)"),
    ("${acl{quiet}}", ""),
    ("${acl {refuse}{a}{b}}", "no b"),
    ("[${acl{greet}{${acl{greet}{x}}}}] $acl_narg", "[hello hello x (1) (1)] "),
])
def test_acl_item(text: str, want: str) -> None:
    assert parse(text).evaluate(_acl_ctx()) == want


def test_acl_item_defer_is_forced_failure_and_error_fails() -> None:
    ctx = _acl_ctx()
    with pytest.raises(errors.ForcedFail):
        parse("${acl{later}}").evaluate(ctx)
    with pytest.raises(errors.ExpansionFailed):
        parse("${acl{broken}}").evaluate(ctx)
    with pytest.raises(errors.ExpansionFailed, match="no ACL named"):
        parse("${acl{missing}}").evaluate(ctx)


def test_and_carries_match_groups_to_later_conditions() -> None:
    # Exim: $1.. of a match are visible to the conditions after it and in the yes branch
    assert ev("${if and{{match{abc}{(b)}}{eq{$1}{b}}}{yes:$1}{no}}") == "yes:b"
    assert ev("${if and{{match{abc}{(b)}}{match{xyz}{(y)}}}{$1}{no}}") == "y"
    assert ev("${if and{{match{abc}{(b)}}{eq{$1}{c}}}{yes}{no}}") == "no"
    assert ev("${if and{{inlist{b}{a:b}}{eq{$value}{b}}}{$value}{no}}") == "b"


def test_acl_item_targets_are_checked_at_load() -> None:
    with pytest.raises(errors.PolicyErrors) as exc:
        load_text("acl:\n  rcpt:\n    - deny: {message: \"${acl{nope}}\"}\n", "p.yaml")
    assert "no ACL named 'nope'" in str(exc.value) and "p.yaml:3" in str(exc.value)
    # the called ACL's items must suit the stage that calls it, as with `acl =`
    text = ("acl:\n  torcpt:\n    - accept: {recipients: a@b.example}\n"
            "  connect:\n    - warn: {log_message: \"${acl{torcpt}}\"}\n")
    with pytest.raises(errors.PolicyErrors, match="not allowed in the connect ACL that calls it"):
        load_text(text, "p.yaml")


@pytest.mark.parametrize("text,want", [
    ("${if acl{{greet}{w}}{y:$value}{n:$value}}", "y:hello w (1)"),
    ("${if acl {{refuse}{a}{b}} {y:$value}{n:[$value]}}", "n:[no b]"),   # $value also in the no branch
    ("${if !acl{{quiet}}{y}{n}}", "n"),
    ("[$value]", "[]"),
])
def test_acl_condition(text: str, want: str) -> None:
    assert parse(text).evaluate(_acl_ctx()) == want


def test_acl_condition_defer_and_load_check() -> None:
    with pytest.raises(errors.ForcedFail):
        parse("${if acl{{later}}{y}{n}}").evaluate(_acl_ctx())
    with pytest.raises(errors.PolicyErrors, match="no ACL named 'gone'"):
        load_text("acl:\n  rcpt:\n    - deny: {condition: \"${if acl{{gone}}}\"}\n", "p.yaml")
    with pytest.raises(errors.SyntaxProblem, match="missing '}' to close acl"):
        parse("${if acl{{a}{b}")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(["\udc80", "\udcff", "/", ".", "&", ":"])),
               max_size=30),
       st.sampled_from(["imapfolder", "utf8_domain_to_alabel", "utf8_domain_from_alabel",
                        "utf8_localpart_to_alabel", "utf8_localpart_from_alabel", "md5", "sha1", "sha256",
                        "hash", "listquote", "quote"]))
def test_items_only_return_text_or_fail_the_expansion(text: str, item: str) -> None:
    """Message data (headers may carry lone surrogates from undecodable bytes) never crashes an item."""
    ctx = make_ctx()
    ctx.locals["value"] = text
    form = {"imapfolder": "${imapfolder{$value}}", "hash": "${hash{3}{$value}}",
            "listquote": "${listquote{:}{$value}}"}.get(item, f"${{{item}:$value}}")
    try:
        assert isinstance(parse(form).evaluate(ctx), str)
    except errors.ExpansionFailed:
        pass


@pytest.mark.parametrize("form", ["${imapfolder{$value}}", "${utf8_domain_to_alabel:$value}",
                                  "${utf8_domain_from_alabel:$value}", "${utf8_localpart_to_alabel:$value}",
                                  "${utf8_localpart_from_alabel:$value}"])
def test_undecodable_bytes_fail_the_conversions(form: str) -> None:
    ctx = make_ctx()
    ctx.locals["value"] = "a\udc80b"          # a raw 0x80 byte kept by surrogateescape
    with pytest.raises(errors.ExpansionFailed, match="UTF-8|alabel"):
        parse(form).evaluate(ctx)


@pytest.mark.parametrize("text", ["${substr{\x1e1}{1}{abc}}", "${length{\x1e1}{abc}}", "${hash{\x1e3}{monty}}"])
def test_numbers_with_unicode_spaces_fail_the_expansion(text: str) -> None:
    with pytest.raises(errors.ExpansionFailed, match="not an integer|not a number"):
        ev(text)
