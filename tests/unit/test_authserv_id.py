"""The authserv-id of an A-R field as it is compared (issue 24 point 6)."""

from __future__ import annotations

import pytest

from aclmilter.checks.authresults import forged_indexes
from aclmilter.checks.authserv_id import authserv_id, raw_authserv_id
from aclmilter.policy import header_guard

OURS = "mx.test.example"


@pytest.mark.parametrize("value", [
    "mx.test.example; dkim=pass header.d=x.example",
    '"mx.test.example"; dkim=pass header.d=x.example',
    "mx.test.example.; dkim=pass",
    '"mx.test.example."; dkim=pass',
    "MX.Test.Example; dkim=pass",
    "\r\n\tmx.test.example;\r\n\tdkim=pass",
    "mx.test.example\r\n ; dkim=pass",
    "(forged) mx.test.example; dkim=pass",
    "(a (nested \\) comment) here) mx.test.example; dkim=pass",
    '(c)"mx.test.\\example"(c); dkim=pass',
    "mx.test.example 1; dkim=pass",
    "mx.test.example(comment); none",
    "mx.test.example",
])
def test_every_spelling_of_our_id_is_ours(value: str) -> None:
    assert authserv_id(value) == OURS
    assert forged_indexes([("Authentication-Results", value)], OURS) == [1]
    assert forged_indexes([("authentication-results", value)], OURS + ".") == [1]
    # the load-time refusal of `add_header` agrees with the removal
    assert header_guard.problems(f"Authentication-Results: {value}", {"authserv_id": OURS})


@pytest.mark.parametrize("value", [
    "mx.test.example.evil; dkim=pass",
    '"mx.test.example x"; dkim=pass',
    "other.example; dkim=pass",
    "mx.test.example..; dkim=pass",
    "(mx.test.example) other.example; dkim=pass",
    "",
    "(only a comment)",
])
def test_other_ids_are_kept(value: str) -> None:
    assert authserv_id(value) != OURS
    assert forged_indexes([("Authentication-Results", value)], OURS) == []
    assert not header_guard.problems(f"Authentication-Results: {value}", {"authserv_id": OURS})


def test_raw_id_resolves_quoted_pairs_and_stops_at_separators() -> None:
    assert raw_authserv_id('"a\\"b"; x') == 'a"b'
    assert raw_authserv_id("a;b") == "a"
    assert raw_authserv_id("a(b)") == "a"
    assert raw_authserv_id('   ') is None


def test_jobid_suffix_still_ours() -> None:
    assert forged_indexes([("Authentication-Results", '"MX.test.example/4XyzQ1"; none')], OURS) == [1]
