# SPDX-License-Identifier: GPL-3.0-or-later
"""Rebuilding the message bytes dkimpy verifies from the milter's header list."""

from __future__ import annotations

from aclmilter.checks.dkim import DkimResult, DkimSignature, DkimStatus, build_message

HEADERS = [("From", "a@example.com"), ("Subject", "two\r\n\tlines"), ("X-Empty", " already spaced")]


def test_auto_restores_the_space_postfix_removed():
    assert build_message(HEADERS, b"body\r\n") == (
        b"From: a@example.com\r\nSubject: two\r\n\tlines\r\nX-Empty: already spaced\r\n\r\nbody\r\n")


def test_add_and_keep_modes():
    assert build_message([("A", " x")], b"", "add") == b"A:  x\r\n\r\n"
    assert build_message([("A", "x")], b"", "keep") == b"A:x\r\n\r\n"


def test_bare_lf_folding_becomes_crlf():
    assert build_message([("S", "a\n b")], b"") == b"S: a\r\n b\r\n\r\n"


def test_summary_status_prefers_pass_then_temperror():
    def sig(d, st):
        return DkimSignature(d, "s", f"@{d}", "rsa-sha256", st)
    assert DkimResult((sig("a", DkimStatus.FAIL), sig("b", DkimStatus.TEMPERROR))).status is DkimStatus.TEMPERROR
    assert DkimResult((sig("a", DkimStatus.FAIL), sig("b", DkimStatus.PASS))).status is DkimStatus.PASS
    assert DkimResult().status is DkimStatus.NONE
