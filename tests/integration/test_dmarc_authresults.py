# SPDX-License-Identifier: GPL-3.0-or-later
"""Our Authentication-Results header and the removal of forged ones (RFC 8601 §5)."""

from __future__ import annotations

import authres
import pytest

from aclmilter.actions import Decision, HeaderPosition, apply_header_removals
from aclmilter.checks.authresults import authresults_hook, forged_indexes
from aclmilter.outcome import Result
from tests.fixtures.dmarc.ctxhelp import make_ctx, message, settings_for, sign

pytestmark = pytest.mark.integration

FORGED = [
    ("Authentication-Results", "mx.test.invalid; dkim=pass header.d=pass.dmarcx; dmarc=pass header.from=pass.dmarcx"),
    ("Authentication-Results", "other.example; spf=fail smtp.mailfrom=x.example"),
    ("Authentication-Results", "MX.Test.Invalid/4XyzQ1;\r\n\tdmarc=pass header.from=pass.dmarcx"),
    ("Authentication-Results", "mx.test.invalid.evil.example; dmarc=pass header.from=pass.dmarcx"),
    ("Authentication-Results", "(comment) mx.test.invalid ; none"),
]


def test_forged_indexes_highest_first():
    assert forged_indexes(FORGED, "mx.test.invalid") == [5, 3, 1]


def test_hook_removes_forged_and_adds_ours_at_top(knot_dns):
    raw = sign(message(extra=FORGED))
    ctx = make_ctx(raw, settings=settings_for(knot_dns.settings()), client="192.0.2.1")
    ctx.check("spf")
    ctx.check("dmarc")
    authresults_hook(ctx, Decision(Result.OK))
    edits = ctx.txn.edits
    targets = apply_header_removals(ctx.txn.headers, edits.header_removes)
    assert targets == [("Authentication-Results", 5), ("Authentication-Results", 3), ("Authentication-Results", 1)]
    [ours] = edits.header_adds
    assert ours.name == "Authentication-Results" and ours.position is HeaderPosition.START
    assert "\r" not in ours.value and "\n" not in ours.value
    parsed = authres.all_features().parse_value(ours.value)
    assert parsed.authserv_id == "mx.test.invalid"
    got = [(r.method, r.result) for r in parsed.results]
    assert got == [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")]
    assert "header.from=pass.dmarcx" in ours.value and "header.d=pass.dmarcx" in ours.value
    assert "smtp.mailfrom=pass.dmarcx" in ours.value


def test_hook_reports_failures_and_nothing_on_reject(knot_dns):
    raw = sign(message()).replace(b"Hi there.", b"tampered!")
    ctx = make_ctx(raw, settings=settings_for(knot_dns.settings()), client="198.51.100.7")
    ctx.check("dmarc")
    authresults_hook(ctx, Decision(Result.OK))
    value = ctx.txn.edits.header_adds[0].value
    assert "dkim=fail" in value and "dmarc=fail (p=reject dis=reject)" in value and "policy.dmarc=reject" in value
    rejected = make_ctx(raw, settings=settings_for(knot_dns.settings()))
    authresults_hook(rejected, Decision(Result.FAIL))
    assert rejected.txn.edits.empty()


def test_hostile_dkim_domain_never_reaches_header(knot_dns):
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=evil.example(; s=x; h=from; bh=AA==; b=AA==\r\n" + message()
    ctx = make_ctx(raw, settings=settings_for(knot_dns.settings()))
    authresults_hook(ctx, Decision(Result.OK))
    value = ctx.txn.edits.header_adds[0].value
    assert "evil.example(" not in value and "dkim=" in value


def test_no_authserv_id_no_header_changes(knot_dns):
    ctx = make_ctx(message(extra=FORGED), settings=settings_for(knot_dns.settings(), authserv_id=None))
    authresults_hook(ctx, Decision(Result.OK))
    assert ctx.txn.edits.empty()
