# SPDX-License-Identifier: GPL-3.0-or-later
"""DKIM verification against real DNS (Knot serving tests/fixtures/dns/zones/dmarcx.zone)."""

from __future__ import annotations

import pytest

from aclmilter.checks.dkim import DkimStatus, build_message
from tests.fixtures.dmarc.ctxhelp import KEY_THIRD, make_ctx, message, settings_for, sign, split_message

pytestmark = pytest.mark.integration


def _dkim(raw: bytes, dns: dict, **kw):
    ctx = make_ctx(raw, settings=settings_for(dns, **kw))
    return ctx, ctx.check("dkim")


def test_rebuilt_message_is_byte_identical():
    raw = sign(message(subject="folded\r\n subject line"), canon=(b"simple", b"simple"))
    headers, body = split_message(raw)
    assert all(not v.startswith(" ") for _, v in headers)   # as Postfix gives them
    assert build_message(headers, body) == raw


@pytest.mark.parametrize("canon", [(b"simple", b"simple"), (b"relaxed", b"relaxed"), (b"relaxed", b"simple")])
def test_pass(knot_dns, canon):
    ctx, res = _dkim(sign(message(), canon=canon), knot_dns.settings())
    assert [s.status for s in res.signatures] == [DkimStatus.PASS]
    sig = res.signatures[0]
    assert (sig.domain, sig.selector, sig.identity) == ("pass.dmarcx", "sel1", "@pass.dmarcx")
    assert res.passing_domains == ("pass.dmarcx",)
    assert ctx.var("dkim_verify_status") == "pass" and ctx.var("dkim_signers") == "pass.dmarcx"
    assert ctx.var("dkim_cur_signer") == "pass.dmarcx" and ctx.var("dkim_selector") == "sel1"


def test_body_tampered_fails(knot_dns):
    raw = sign(message()).replace(b"Hi there.", b"Hi thor..")
    ctx, res = _dkim(raw, knot_dns.settings())
    assert res.signatures[0].status is DkimStatus.FAIL
    assert "body hash" in res.signatures[0].reason
    assert ctx.var("dkim_verify_status") == "fail" and ctx.var("dkim_signers") == ""


def test_header_tampered_fails(knot_dns):
    raw = sign(message()).replace(b"Subject: hello", b"Subject: HELLO")
    _, res = _dkim(raw, knot_dns.settings())
    assert res.signatures[0].status is DkimStatus.FAIL


def test_key_not_found_is_permerror(knot_dns):
    _, res = _dkim(sign(message(), selector="nokey"), knot_dns.settings())
    assert res.signatures[0].status is DkimStatus.PERMERROR
    assert res.signatures[0].reason == "no key for signature"


def test_bad_key_is_permerror(knot_dns):
    _, res = _dkim(sign(message(), selector="broken"), knot_dns.settings())
    assert res.signatures[0].status is DkimStatus.PERMERROR


def test_dns_timeout_is_temperror(silent_dns):
    dns = silent_dns.settings(timeout=0.2, lifetime=0.4, budget=0.6)
    ctx, res = _dkim(sign(message()), dns)
    assert res.signatures[0].status is DkimStatus.TEMPERROR
    assert ctx.var("dkim_verify_status") == "temperror"


def test_each_signature_separately_and_cap(knot_dns):
    raw = sign(sign(message()), domain="third.dmarcx", key=KEY_THIRD)   # third on top
    raw = sign(raw, selector="nokey")
    _, res = _dkim(raw, knot_dns.settings())
    assert [(s.domain, s.status) for s in res.signatures] == [
        ("pass.dmarcx", DkimStatus.PERMERROR), ("third.dmarcx", DkimStatus.PASS), ("pass.dmarcx", DkimStatus.PASS)]
    assert res.status is DkimStatus.PASS and res.passing_domains == ("third.dmarcx", "pass.dmarcx")
    ctx, capped = _dkim(raw, knot_dns.settings(), dkim_max_signatures=1)
    assert len(capped.signatures) == 1 and capped.skipped == 2
    assert ctx.var("dkim_signature_count") == "3"


def test_garbage_signature_is_permerror(knot_dns):
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=pass.dmarcx; b=@@@\r\n" + message()
    _, res = _dkim(raw, knot_dns.settings())
    assert res.signatures[0].status is DkimStatus.PERMERROR


def test_unsigned_is_none(knot_dns):
    ctx, res = _dkim(message(), knot_dns.settings())
    assert res.signatures == () and res.status is DkimStatus.NONE
    assert ctx.var("dkim_verify_status") == "none"


def test_trusted_upstream_results(knot_dns):
    raw = message(extra=[("Authentication-Results",
                          "relay.trusted.invalid; dkim=pass header.d=pass.dmarcx header.s=sel1")])
    _, res = _dkim(raw, knot_dns.settings(), trusted_authserv_ids=("relay.trusted.invalid",))
    assert res.source == "upstream:relay.trusted.invalid"
    assert res.passing_domains == ("pass.dmarcx",)
    _, untrusted = _dkim(raw, knot_dns.settings())
    assert untrusted.signatures == ()
