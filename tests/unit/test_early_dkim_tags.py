# SPDX-License-Identifier: GPL-3.0-or-later
"""early._selector_and_domain (the key a DKIM-Signature's early lookup asks for) reads s= and
d= as the pattern it replaced did: generated fields, compared with that pattern kept here as
the oracle (case-sensitive tag names like dkimpy's, the last of each, white space removed)."""

from __future__ import annotations

import re

from hypothesis import given, settings, strategies as st

from aclmilter.early import _selector_and_domain

_ORACLE = re.compile(r"(?:^|;)\s*([sd])\s*=\s*([^;]*)")
_WS = re.compile(r"\s+")

pieces = st.sampled_from(["s", "d", "S", "D", "=", ";", " ", "\t", "\r\n ", "\x0b", "\x1c", "\u00a0", "\u2028",
                          "sel", "example.org", "ds", "s =", " d= ", "a=rsa-sha256", "h=from:to"]) | st.text(max_size=2)


def _keyed(tags: dict[str, str]) -> tuple[str, str]:
    return _WS.sub("", tags.get("s", "")), _WS.sub("", tags.get("d", ""))


@settings(max_examples=2000, deadline=None)
@given(st.lists(pieces, max_size=20).map("".join))
def test_selector_and_domain_as_the_old_pattern(value: str) -> None:
    assert _keyed(_selector_and_domain(value)) == _keyed(dict(_ORACLE.findall(value)))


def test_upper_case_tags_are_not_the_key_dkimpy_asks_for() -> None:
    assert _keyed(_selector_and_domain(" v=1; d=a.example; D=b.example; s=x; S=y")) == ("x", "a.example")
