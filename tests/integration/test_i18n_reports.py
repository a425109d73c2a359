# SPDX-License-Identifier: GPL-3.0-or-later
"""DMARC failure reports for UTF-8 addresses (RFC 6531 SMTPUTF8, RFC 6532 headers, RFC 6533)."""

from __future__ import annotations

import email
from email import policy

import pytest

from aclmilter.actions import Decision
from aclmilter.checks.dmarc import DmarcStatus
from aclmilter.checks.dmarc_forensic import forensic_hook
from aclmilter.outcome import Result
from tests.fixtures.dmarc.ctxhelp import make_ctx, message, settings_for
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration


def _report(knot, smtp, sender="jösé@forged.idnx", from_="Jösé Müller <jösé@bücher.idnx>",
            subject="Grüße aus Köln", **settings):
    raw = message(from_=from_, subject=subject)
    ctx = make_ctx(raw, settings=settings_for(knot.settings(), dmarc_forensic_smtp=smtp, dmarc_forensic_timeout=5,
                                              **settings),
                   sender=sender, client="198.51.100.7", helo="mx.forged.idnx", controls=("dmarc_enable_forensic",))
    res = ctx.check("dmarc")
    forensic_hook(ctx, Decision(Result.FAIL))
    return ctx, res


@pytest.mark.parametrize("report_sender", [None, "dmarc-berichte@bücher.idnx", "bérichte@mx.idnx"])
def test_report_to_utf8_recipient_goes_out_with_smtputf8(knot_dns, report_sender):
    extra = {"dmarc_forensic_sender": report_sender} if report_sender else {}
    with Sink(smtputf8=True) as sink:
        ctx, res = _report(knot_dns, f"127.0.0.1:{sink.port}", **extra)
        [env] = sink.wait_for(1)
    assert res.status is DmarcStatus.REJECT and res.from_domain == "xn--bcher-kva.idnx"
    assert env.rcpt_tos == ("rüf@xn--bcher-kva.idnx", "ruf@xn--bcher-kva.idnx")
    assert "SMTPUTF8" in [o.upper() for o in env.mail_options]
    if report_sender:
        assert env.mail_from.split("@")[0] == report_sender.split("@")[0]
    msg = email.message_from_bytes(env.data, policy=policy.SMTPUTF8)
    assert msg.get_content_type() == "multipart/report" and "rüf@xn--bcher-kva.idnx" in msg["To"]
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/feedback-report", "message/global-headers"]
    text = env.data.decode("utf-8")      # valid UTF-8 throughout
    feedback, original = text.split("message/feedback-report", 1)[1], text.split("message/global-headers", 1)[1]
    assert "Original-Mail-From: jösé@forged.idnx" in feedback and "Reported-Domain: xn--bcher-kva.idnx" in feedback
    assert "From: Jösé Müller <jösé@bücher.idnx>" in original and "Subject: Grüße aus Köln" in original
    assert not any("not sent" in line for line in ctx.log_lines)


def test_ascii_report_stays_ascii(knot_dns):
    with Sink(smtputf8=True) as sink:
        _report(knot_dns, f"127.0.0.1:{sink.port}", sender="bounce@forged.idnx",
                from_="Joe <joe@xn--bcher-kva.idnx>", subject="hello")
        [env] = sink.wait_for(1)
    # one recipient is UTF-8, so SMTPUTF8 is still needed for the envelope; the headers part is ASCII
    msg = email.message_from_bytes(env.data, policy=policy.SMTPUTF8)
    assert [p.get_content_type() for p in msg.iter_parts()][2] == "text/rfc822-headers"


def test_relay_without_smtputf8_gets_nothing_and_it_is_logged(knot_dns):
    with Sink(smtputf8=False) as sink:
        ctx, _ = _report(knot_dns, f"127.0.0.1:{sink.port}")
        assert sink.deliveries == []
    assert any("not sent" in line and "SMTPUTF8" in line for line in ctx.log_lines)
