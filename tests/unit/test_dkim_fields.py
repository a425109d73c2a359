"""checks/dkim_fields gives the field list dkimpy's own parse makes of the rebuilt header
block, or declines (None) and the old path runs; compared on generated milter fields."""

import dkim
import pytest
from hypothesis import given, settings, strategies as st

from aclmilter.checks.dkim import build_message
from aclmilter.checks.dkim_fields import header_fields

names = st.sampled_from(["From", "DKIM-Signature", "X-Y", "a:b", "Sub ject", "Ré", "\udcff", "", "~!"])
value_parts = st.sampled_from([" ", "\t", "a", "é", "\udce9", "\r\n", "\n", "\r", "\n\t", "\r\n ",
                               "\n\n", "v=1; b=x", ":"])
values = st.lists(value_parts, max_size=8).map("".join)
modes = st.sampled_from(["auto", "add", "keep"])


def dkimpy_fields(headers: list[tuple[str, str]], mode: str) -> list[list[bytes]] | str:
    try:
        return [list(f) for f in dkim.rfc822_parse(build_message(headers, b"", mode))[0]]
    except dkim.MessageFormatError:
        return "refused"


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=6), modes)
def test_same_fields_as_dkimpys_parse(headers: list[tuple[str, str]], mode: str) -> None:
    ours = header_fields(headers, mode)
    if ours is not None:
        assert ours == dkimpy_fields(headers, mode)


@pytest.mark.parametrize("mode", ["auto", "add", "keep"])
def test_postfix_shaped_fields_take_the_direct_path(mode: str) -> None:
    headers = [("DKIM-Signature", "v=1; a=rsa-sha256; d=example.org;\n\ts=sel; h=from:to;\n\tb=abc"),
               ("From", "Alice <alice@example.org>"), ("Subject", " hello\r\n world"), ("X-Empty", "")]
    ours = header_fields(headers, mode)
    assert ours is not None and ours == dkimpy_fields(headers, mode)


@pytest.mark.parametrize("headers", [[("Sub ject", "x")], [("X", "a\nb")], [("X", "a\n")], [("Ré", "x")]])
def test_fields_dkimpy_would_read_its_own_way_are_declined(headers: list[tuple[str, str]]) -> None:
    assert header_fields(headers) is None


# Review 2026-12-07 (rev9): names dkimpy refuses or reads its own way (DEL, a leading "From ",
# control characters, white space of any kind) and values with CR runs, VT/FF, Unicode line
# separators and "From " lines: wherever header_fields answers, it is dkimpy's answer.
wide_names = st.sampled_from(["From", "From ", "From x", "X", "\x7f", "A\x7f", "\t", "A\x00", "é", "a:b", ""]) \
    | st.text(max_size=3)
wide_parts = st.sampled_from([" ", "\t", "a", "\r\n", "\n", "\r", "\r\r\n", "\r \n", "\n\r", "\r\n\t",
                              "\x0b", "\x0c", "\r\n\x0b", "\n\x0c", "\x00", ":", "\u2028", "\x85", "\r\nFrom x", "\udce9"]) \
    | st.text(max_size=2)


@settings(max_examples=2500, deadline=None)
@given(st.lists(st.tuples(wide_names, st.lists(wide_parts, max_size=8).map("".join)), max_size=5), modes)
def test_same_fields_as_dkimpys_parse_on_odd_input(headers: list[tuple[str, str]], mode: str) -> None:
    try:
        build_message(headers, b"", mode)
    except UnicodeEncodeError:      # a lone high surrogate: neither path can write it
        return
    ours = header_fields(headers, mode)
    if ours is not None:
        assert ours == dkimpy_fields(headers, mode)
