"""Expansion language: parsing, every item/operator/condition, failures, headers, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from tests.strategies import utf8_characters

from aclmilter import errors
from aclmilter.expand import Expansion, parse
from aclmilter.expand import arith

from .fakes_ctx import make_ctx


def ev(text: str, **kw) -> str:
    return parse(text).evaluate(make_ctx(**kw))


# ---- plain text, escapes, static ----------------------------------------------------------------

@pytest.mark.parametrize("text,want", [
    ("hello world", "hello world"),
    (r"a\$b", "a$b"),
    (r"a\\b", "a\\b"),
    (r"x\ny\tz\r", "x\ny\tz\r"),
    (r"\101\x42\x4a", "ABJ"),
    (r"\N${not expanded}$x\N!", "${not expanded}$x!"),
    (r"\q", "q"),
    ("{plain} braces}", "{plain} braces}"),
])
def test_static_text_and_escapes(text: str, want: str) -> None:
    e = parse(text)
    assert e.is_static
    assert e.literal == want
    assert e.evaluate(make_ctx()) == want


def test_dynamic_is_not_static() -> None:
    e = parse("a $acl_m_x b")
    assert not e.is_static
    with pytest.raises(ValueError):
        _ = e.literal
    assert isinstance(e, Expansion) and e.text == "a $acl_m_x b"


# ---- variables -----------------------------------------------------------------------------------

def test_acl_variables_and_braced_form() -> None:
    ctx = make_ctx()
    ctx.set_var("acl_m_score", "7")
    ctx.conn.acl_c["acl_c0"] = "conn"
    assert parse("s=$acl_m_score ${acl_m_score}x $acl_c0").evaluate(ctx) == "s=7 7x conn"
    assert parse("[$acl_m_unset]").evaluate(ctx) == "[]"


def test_variables_listed() -> None:
    e = parse("$acl_m1 ${if eq{$acl_c_a}{x}{$h_subject:}} ${lookup{$acl_m2}lsearch{/nonexistent}}")
    assert e.variables() == {"acl_m1", "acl_c_a", "h_subject", "acl_m2"}


@pytest.mark.parametrize("text,offset", [
    ("abc $no_such_variable", 4),
    ("${no_such_variable}", 0),
    ("ab ${if def:nosuch {y}}", 12),
])
def test_unknown_variable_is_a_parse_error_with_offset(text: str, offset: int) -> None:
    with pytest.raises(errors.SyntaxProblem) as exc:
        parse(text)
    assert "unknown variable" in str(exc.value)
    assert exc.value.offset == offset


def test_local_data_variables_default_empty() -> None:
    assert ev("[$host_data][$value]") == "[][]"


# ---- syntax errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,offset,fragment", [
    ("abc ${if eq{a}{b}", 4, "missing '}'"),
    ("${lc:abc", 0, "missing '}'"),
    ("x ${if eq{a}{b} {y}{n} junk}", 23, "expected '}'"),
    ("money $", 6, "'$'"),
    ("$ 5", 0, "'$'"),
    ("${if ne{a}{b}}", 5, "unknown condition"),
    ("${nosuchop:x}", 2, "unknown operator"),
    ("${lookup{a}nosuchtype{/f}}", 11, "unknown lookup type"),
    ("${if match{a}{(}}", 14, "regular expression"),
    ("${sg{a}{[}{b}}", 8, "regular expression"),
    ("${h_subject:}", 0, "braces are not allowed"),
    ("$h_subject", 10, "must end with ':'"),
    ("${lookup{a}lsearch{$acl_m_f}}", 18, "fixed text"),
    ("${lookup{a}lsearch{relative}}", 18, "absolute"),
    ("${if}", 4, "missing condition"),
    ("${imapfolder}", 12, "expected '{'"),
    ("${hash{1}}", 9, "expected '{'"),
    ("${listquote{:}}", 14, "expected '{'"),
    ("${md5}", 0, "unknown variable name"),
])
def test_syntax_errors(text: str, offset: int, fragment: str) -> None:
    with pytest.raises(errors.SyntaxProblem) as exc:
        parse(text)
    assert fragment in str(exc.value)
    assert exc.value.offset == offset


@pytest.mark.parametrize("item", ["run", "readsocket", "readfile", "perl", "dlfunc", "env"])
def test_command_and_io_items_are_refused(item: str) -> None:
    with pytest.raises(errors.SyntaxProblem) as exc:
        parse(f"x ${{{item}{{/bin/sh}}{{-c}}{{id}}}}")
    assert "refused" in str(exc.value)
    assert exc.value.offset == 2


def test_exists_condition_refused() -> None:
    with pytest.raises(errors.SyntaxProblem, match="refused"):
        parse("${if exists{/etc/passwd}}")


def test_deep_nesting_is_a_syntax_problem_not_a_crash() -> None:
    with pytest.raises(errors.SyntaxProblem, match="nested"):
        parse("${lc:" * 500 + "x" + "}" * 500)


# ---- if and conditions --------------------------------------------------------------------------

@pytest.mark.parametrize("text,want", [
    ("${if eq{a}{a}{yes}{no}}", "yes"),
    ("${if eq{a}{A}{yes}{no}}", "no"),
    ("${if eqi{a}{A}{yes}{no}}", "yes"),
    ("${if !eq{a}{b}{yes}{no}}", "yes"),
    ("${if ! ! eq{a}{b}{yes}{no}}", "no"),
    ("${if eq{a}{b}{yes}}", ""),
    ("${if eq{a}{a}}", "true"),
    ("${if eq{a}{b}}", ""),
    ("${if eq {a} {a} {yes} {no}}", "yes"),
    ("${if ={10}{10}{y}{n}}", "y"),
    ("${if =={1K}{1024}{y}{n}}", "y"),
    ("${if <{2}{10}{y}{n}}", "y"),
    ("${if <={10}{10}{y}{n}}", "y"),
    ("${if >{-1}{0}{y}{n}}", "n"),
    ("${if >={1M}{1048576}{y}{n}}", "y"),
    ("${if ={}{0}{y}{n}}", "y"),
    ("${if lt{abc}{abd}{y}{n}}", "y"),
    ("${if le{b}{a}{y}{n}}", "n"),
    ("${if gt{b}{a}{y}{n}}", "y"),
    ("${if ge{a}{a}{y}{n}}", "y"),
    ("${if lti{B}{a}{y}{n}}", "n"),
    ("${if gei{B}{a}{y}{n}}", "y"),
    ("${if lei{A}{a}{y}{n}}", "y"),
    ("${if gti{b}{A}{y}{n}}", "y"),
    ("${if bool{yes}{y}{n}}", "y"),
    ("${if bool{ 0 }{y}{n}}", "n"),
    ("${if bool{12}{y}{n}}", "y"),
    ("${if bool{}{y}{n}}", "n"),
    ("${if bool_lax{anything}{y}{n}}", "y"),
    ("${if bool_lax{No}{y}{n}}", "n"),
    ("${if isip{192.0.2.1}{y}{n}}", "y"),
    ("${if isip{2001:db8::1}{y}{n}}", "y"),
    ("${if isip{300.1.1.1}{y}{n}}", "n"),
    ("${if isip4{2001:db8::1}{y}{n}}", "n"),
    ("${if isip6{2001:db8::1}{y}{n}}", "y"),
    ("${if and{{eq{a}{a}}{eq{b}{b}}}{y}{n}}", "y"),
    ("${if and{{eq{a}{a}}{eq{b}{c}}}{y}{n}}", "n"),
    ("${if or{{eq{a}{b}}{eq{b}{b}}}{y}{n}}", "y"),
    ("${if or{ {eq{a}{b}} {eq{b}{c}} }{y}{n}}", "n"),
    # Exim: inside and{} a match's $1.. is seen by the later sub-conditions; afterwards the
    # last match's values remain
    ("${if and{{match{user@example.org}{\\N^([^@]+)@(.+)\\N}}{eq{$2}{example.org}}}{$1}{n}}", "user"),
    ("${if and{{match{ab}{\\N(a)\\N}}{match{cd}{\\N(d)\\N}}}{$1}{n}}", "d"),
    ("${if and{{match{ab}{\\N(a)(b)\\N}}{match{cd}{\\N(d)\\N}}}{$1$2}{n}}", "d"),
    ("${if and{{match{ab}{\\N(a)\\N}}{eq{$1}{b}}}{y}{n}}", "n"),
    # or{}: the values of the first true sub-condition
    ("${if or{{match{ab}{\\N(x)\\N}}{match{cd}{\\N(c)\\N}}{match{ef}{\\N(e)\\N}}}{$1}{n}}", "c"),
    ("${if !or{{eq{a}{b}}}{y}{n}}", "y"),
    ("${if inlist{b}{a : b : c}{[$value]}{n}}", "[b]"),
    ("${if inlist{B}{a:b}{y}{n}}", "n"),
    ("${if inlisti{B}{<; a;b}{[$value]}{n}}", "[b]"),
    ("${if match_ip{192.0.2.7}{10.0.0.0/8 : 192.0.2.0/24}{y}{n}}", "y"),
    ("${if match_ip{192.0.2.7}{<; 2001:db8::/32}{y}{n}}", "n"),
    ("${if match_domain{a.example.com}{*.example.com}{y}{n}}", "y"),
    ("${if match_address{u@x.org}{*@x.org}{y}{n}}", "y"),
    ("${if match_local_part{Joe}{joe}{y}{n}}", "y"),
])
def test_conditions(text: str, want: str) -> None:
    assert ev(text) == want


def test_match_sets_numbered_variables_only_in_yes_branch() -> None:
    ctx = make_ctx()
    e = parse(r"${if match{abc123}{\N^([a-z]+)(\d+)$\N}{$2-$1-$0}{no}}")
    assert e.evaluate(ctx) == "123-abc-abc123"
    assert "1" not in ctx.locals and "0" not in ctx.locals
    assert parse(r"${if match{xyz}{\N^\d\N}{y}{no:$1}}").evaluate(ctx) == "no:"


def test_match_dynamic_regex_and_bad_dynamic_regex() -> None:
    ctx = make_ctx()
    ctx.set_var("acl_m_re", "^a.c$")
    assert parse("${if match{abc}{$acl_m_re}{y}{n}}").evaluate(ctx) == "y"
    ctx.set_var("acl_m_re", "(")
    with pytest.raises(errors.ExpansionFailed):
        parse("${if match{abc}{$acl_m_re}{y}{n}}").evaluate(ctx)


def test_def_variable_and_header() -> None:
    ctx = make_ctx(headers=[("Subject", "hi")])
    ctx.set_var("acl_m_x", "1")
    assert parse("${if def:acl_m_x{y}{n}}").evaluate(ctx) == "y"
    assert parse("${if def:acl_m_y{y}{n}}").evaluate(ctx) == "n"
    assert parse("${if def:h_subject:{y}{n}}").evaluate(ctx) == "y"
    assert parse("${if def:h_x-missing:{y}{n}}").evaluate(ctx) == "n"


@pytest.mark.parametrize("text", [
    "${if ={abc}{1}{y}{n}}", "${if <{1}{1x}{y}{n}}", "${if bool{maybe}{y}{n}}",
    "${eval:1/0}", "${eval:1+}", "${mask:nonsense}", "${reverse_ip:x}", "${substr{a}{1}{abc}}",
])
def test_expansion_failures(text: str) -> None:
    with pytest.raises(errors.ExpansionFailed):
        ev(text)


# ---- forced failure ------------------------------------------------------------------------------

def test_unbraced_fail_forces_failure_braced_fail_is_text() -> None:
    with pytest.raises(errors.ForcedFail):
        ev("${if eq{a}{b}{yes}fail}")
    with pytest.raises(errors.ForcedFail):
        ev("x ${if eq{a}{b} {yes} fail }")
    assert ev("${if eq{a}{b}{yes}{fail}}") == "fail"
    assert ev("${if eq{a}{a}{yes}fail}") == "yes"


def test_and_or_short_circuit() -> None:
    # the second operand would fail the expansion if it were evaluated
    assert ev("${if or{{eq{a}{a}}{={x}{1}}}{y}{n}}") == "y"
    assert ev("${if and{{eq{a}{b}}{={x}{1}}}{y}{n}}") == "n"
    with pytest.raises(errors.ExpansionFailed):
        ev("${if and{{eq{a}{a}}{={x}{1}}}{y}{n}}")


# ---- operators -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,want", [
    ("${lc:AbC}", "abc"),
    ("${uc:AbC}", "ABC"),
    ("${domain:Joe <Joe@Example.org>}", "Example.org"),
    ("${local_part:Joe <Joe@Example.org>}", "Joe"),
    ("${address:Joe Bloggs <joe@example.org>}", "joe@example.org"),
    ("${domain:nodomain}", ""),
    ("${mask:192.168.3.77/24}", "192.168.3.0/24"),
    ("${mask:2001:db8:1:2::1/48}", "2001.0db8.0001.0000.0000.0000.0000.0000/48"),
    ("${reverse_ip:192.0.2.1}", "1.2.0.192"),
    ("${reverse_ip:2001:db8::1}", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"),
    ("${length_3:abcdef}", "abc"),
    ("${length{2}{abcdef}}", "ab"),
    ("${length_10:abc}", "abc"),
    ("${substr_2:abcdef}", "cdef"),
    ("${substr_2_3:abcdef}", "cde"),
    ("${substr_-2:abcdef}", "abcde"),
    ("${substr_-3_2:abcdef}", "de"),
    ("${substr{1}{2}{abcdef}}", "bc"),
    ("${substr{-1}{5}{abcdef}}", "f"),
    ("${substr{10}{2}{abc}}", ""),
    ("${sg{abcabc}{b}{X}}", "aXcaXc"),
    (r"${sg{a1b22}{\N(\d+)\N}{\N<$1>\N}}", "a<1>b<22>"),
    (r"${sg{a1b22}{\N(\d+)\N}{<\$1>}}", "a<1>b<22>"),
    ("${listcount:a:b::c:}", "2"),
    ("${listcount:<; 1;2;3}", "3"),
    ("${listcount:}", "0"),
    ("${eval:1+2*3}", "7"),
    ("${eval:(1+2)*3}", "9"),
    ("${eval:-7/2}", "-3"),
    ("${eval:-7%3}", "-1"),
    ("${eval:1<<10 | 3}", "1027"),
    ("${eval:0x10 + 010}", "24"),
    ("${eval10:010}", "10"),
    ("${eval:2K}", "2048"),
    ("${eval:~0 & 0xff ^ 1}", "254"),
    ("${quote:abc}", "abc"),
    ('${quote:a "b"}', '"a \\"b\\""'),
    ("${quote_local_part:a b}", '"a b"'),
    ("${quote_local_part:a.b}", "a.b"),
    ("${quote_lsearch:a b}", "a b"),
    ("${strlen:abcd}", "4"),
])
def test_operators(text: str, want: str) -> None:
    assert ev(text) == want


def test_operators_apply_to_expanded_text() -> None:
    ctx = make_ctx()
    ctx.set_var("acl_m_a", "MiXeD")
    assert parse("${lc:$acl_m_a}-${uc:${lc:$acl_m_a}}").evaluate(ctx) == "mixed-MIXED"


# ---- headers --------------------------------------------------------------------------------------

HEADERS = [
    ("Subject", "=?utf-8?q?h=C3=A9llo?=\r\n\tworld  "),
    ("X-Tag", "one"),
    ("x-tag", " two\r\n  folded"),
    ("Empty", ""),
]


@pytest.mark.parametrize("text,want", [
    ("$h_subject:", "héllo\tworld"),
    ("$header_Subject:", "héllo\tworld"),
    ("$bh_subject:", "=?utf-8?q?h=C3=A9llo?=\tworld"),
    ("$rh_subject:", "=?utf-8?q?h=C3=A9llo?=\r\n\tworld  "),
    ("$h_x-tag:", "one\ntwo  folded"),
    ("$lh_x-tag:", "one\ntwo  folded"),
    ("[$h_missing:]", "[]"),
    ("[$h_empty:]", "[]"),
])
def test_header_variables(text: str, want: str) -> None:
    assert ev(text, headers=HEADERS) == want


def test_header_without_transaction_is_empty() -> None:
    assert ev("[$h_subject:]", txn=None) == "[]"


# ---- lookups ---------------------------------------------------------------------------------------

def test_lookup_single_key(tmp_path) -> None:
    f = tmp_path / "t"
    f.write_text("alice: A value\nbob   second\n*@example.org: dom\n*: star\n")
    assert ev(f"${{lookup{{Alice}}lsearch{{{f}}}}}") == "A value"
    assert ev(f"${{lookup{{bob}}lsearch{{{f}}}{{[$value]}}{{none}}}}") == "[second]"
    assert ev(f"${{lookup{{carol}}lsearch{{{f}}}{{[$value]}}{{none}}}}") == "none"
    assert ev(f"${{lookup{{carol}}lsearch{{{f}}}{{[$value]}}}}") == ""
    assert ev(f"${{lookup{{carol}}lsearch*{{{f}}}}}") == "star"
    assert ev(f"${{lookup{{x@example.org}}lsearch*@{{{f}}}}}") == "dom"
    with pytest.raises(errors.ForcedFail):
        ev(f"${{lookup{{carol}}lsearch{{{f}}}{{$value}}fail}}")


def test_value_is_restored_after_lookup(tmp_path) -> None:
    f = tmp_path / "t"
    f.write_text("k: v\n")
    ctx = make_ctx()
    ctx.locals["value"] = "outer"
    assert parse(f"${{lookup{{k}}lsearch{{{f}}}{{$value}}}}/$value").evaluate(ctx) == "v/outer"


def test_lookup_unreadable_file_is_an_error(tmp_path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(errors.FileUnreadable, match="missing"):
        ev(f"${{lookup{{a}}lsearch{{{missing}}}}}")


# ---- arithmetic unit --------------------------------------------------------------------------------

def test_eval_overflow_and_limits() -> None:
    with pytest.raises(errors.ExpansionFailed):
        arith.evaluate("9223372036854775807 + 1")
    with pytest.raises(errors.ExpansionFailed):
        arith.evaluate("(" * 200 + "1" + ")" * 200)
    assert arith.evaluate("1 << 63") == -(1 << 63)


# ---- properties ------------------------------------------------------------------------------------

ALPHABET = utf8_characters()


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("${}\\:abcdefghilmnoqu_ !=<>0123456789NhK-"), max_size=60))
def test_parse_raises_only_syntax_problems(text: str) -> None:
    try:
        e = parse(text)
    except errors.SyntaxProblem as exc:
        assert 0 <= exc.offset <= len(text)
        return
    assert e.text == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=80))
def test_parse_raises_only_syntax_problems_any_text(text: str) -> None:
    try:
        parse(text)
    except errors.SyntaxProblem:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=80).filter(lambda t: not set(t) & set("$\\{")))
def test_plain_text_round_trips(text: str) -> None:
    e = parse(text)
    assert e.is_static and e.literal == text
    assert e.evaluate(make_ctx()) == text


WORD = st.text(alphabet="abcAB", max_size=4)


def _tree(depth: int):
    leaf = WORD.map(lambda w: (w, w))
    if depth == 0:
        return leaf

    def build(args):
        a, b, (yt, yv), (nt, nv), caseless, neg = args
        cond = ("eqi" if caseless else "eq")
        same = a.lower() == b.lower() if caseless else a == b
        if neg:
            same = not same
        text = f"${{if {'!' if neg else ''}{cond}{{{a}}}{{{b}}}{{{yt}}}{{{nt}}}}}"
        return text, yv if same else nv
    sub = _tree(depth - 1)
    return st.one_of(leaf, st.tuples(WORD, WORD, sub, sub, st.booleans(), st.booleans()).map(build))


@settings(max_examples=300, deadline=None)
@given(_tree(3))
def test_nested_if_trees_match_reference(pair) -> None:
    text, expected = pair
    assert parse(text).evaluate(make_ctx()) == expected


def test_header_line_breaks_never_survive_decoding_or_unfolding() -> None:
    hdrs = [("Subject", "hi\r\nInjected: yes"), ("X-Enc", "=?utf-8?q?a=0D=0AInjected:_x?=")]
    assert ev("$h_subject:", headers=hdrs) == "hi Injected: yes"
    assert ev("$h_x-enc:", headers=hdrs) == "a Injected: x"
    assert "\n" not in ev("$bh_subject:", headers=hdrs)


# ---- one table of implemented items (expand/functions.py) ---------------------------------------

def test_every_implemented_item_is_in_the_vocabulary_and_names_are_not_reused() -> None:
    from aclmilter.expand import functions, names
    for name in functions.FUNCTIONS:
        assert name in names.FUNCTION_ITEMS or names.split_operator(name)[0] == name, name
    for taken in ("md5", "acl", "srs_encode", "sg"):
        with pytest.raises(RuntimeError, match="already defined"):
            functions.register(taken, 1, lambda ctx, args: "")
    assert ev("${md5:abc}|${sha2_256:abc}").startswith("900150983cd24fb0d6963f7d28e17f72|BA7816BF")
    assert ev("${hash{3}{5}{abcdef}}|${listquote{:}{a:b}}") == ev("${hash_3_5:abcdef}") + "|a::b"
