# SPDX-License-Identifier: GPL-3.0-or-later
"""DMARC failure reports: sent to an in-process SMTP sink, parsed back with the email package."""

from __future__ import annotations

import email
from email import policy

import pytest
from aiosmtpd.controller import Controller

from aclmilter.actions import Decision
from aclmilter.checks.dmarc_forensic import forensic_hook
from aclmilter.outcome import Result
from tests.fixtures.dmarc.ctxhelp import make_ctx, message, settings_for, sign
from tests.harness.procs import free_port

pytestmark = pytest.mark.integration


class _Sink:
    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd API
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def sink():
    handler = _Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, f"127.0.0.1:{port}"
    finally:
        controller.stop()


def _run(knot, smtp, raw, *, controls=("dmarc_enable_forensic",), decision=Result.FAIL, services_ctx=None,
         client="198.51.100.7", **kw):
    settings = settings_for(knot.settings(), dmarc_forensic_smtp=smtp, dmarc_forensic_timeout=5,
                            **kw.pop("settings", {}))
    ctx = make_ctx(raw, settings=settings, client=client, controls=controls, **kw)
    if services_ctx is not None:
        ctx.services = services_ctx.services
    ctx.check("dmarc")
    forensic_hook(ctx, Decision(decision))
    return ctx


def test_report_sent_and_parses(knot_dns, sink):
    handler, smtp = sink
    raw = sign(message(subject="secret plans")).replace(b"Hi there.", b"tampered")
    _run(knot_dns, smtp, raw)
    [env] = handler.envelopes
    assert env.mail_from == "do-not-reply@mx.test.invalid" and env.rcpt_tos == ["ruf@pass.dmarcx", "ext@ops.dmarcx"]   # nope@other.dmarcx: unverified
    msg = email.message_from_bytes(env.content, policy=policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "feedback-report"
    assert msg["Auto-Submitted"] == "auto-generated"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/feedback-report", "text/rfc822-headers"]
    fb = parts[1].get_payload()
    fields = email.message_from_string(fb if isinstance(fb, str) else fb[0].as_string())
    assert fields["Feedback-Type"] == "auth-failure" and fields["Auth-Failure"] == "dmarc"
    assert fields["Version"] == "1" and fields["Identity-Alignment"] == "none"
    assert fields["DKIM-Domain"] == "pass.dmarcx" and fields["DKIM-Selector"] == "sel1"
    assert fields["DKIM-Identity"] == "@pass.dmarcx"
    assert fields["SPF-DNS"] == 'txt : pass.dmarcx : "v=spf1 ip4:192.0.2.0/24 -all"'
    assert fields["Source-IP"] == "198.51.100.7" and fields["Reported-Domain"] == "pass.dmarcx"
    assert fields["Original-Mail-From"] == "bounce@pass.dmarcx" and fields["Delivery-Result"] == "reject"
    assert "dmarc=fail" in fields["Authentication-Results"]
    original = parts[2].get_payload(decode=True).decode()
    assert "Subject: secret plans" in original and "DKIM-Signature:" in original


def test_not_sent_without_control_or_ruf_or_on_pass(knot_dns, sink):
    handler, smtp = sink
    _run(knot_dns, smtp, message(), controls=())                        # not enabled
    _run(knot_dns, smtp, message(from_="a@quar.dmarcx"))                 # no ruf
    _run(knot_dns, smtp, sign(message()), decision=Result.OK, client="192.0.2.1")   # both aligned: pass
    assert handler.envelopes == []


def test_fo_1_reports_a_pass_with_one_failed_mechanism(knot_dns, sink):
    handler, smtp = sink
    _run(knot_dns, smtp, sign(message()), decision=Result.OK)   # DKIM aligned pass, SPF fails: fo=1
    [env] = handler.envelopes
    assert b"Identity-Alignment: dkim" in env.content and b"Delivery-Result: delivered" in env.content


def test_no_report_about_reports(knot_dns, sink):
    handler, smtp = sink
    _run(knot_dns, smtp, message(extra=[("Auto-Submitted", "auto-generated")]))
    _run(knot_dns, smtp, message(extra=[("Content-Type", "multipart/report; report-type=feedback-report")]))
    _run(knot_dns, smtp, message(), sender="do-not-reply@mx.test.invalid")
    assert handler.envelopes == []


def test_rate_limited(knot_dns, sink):
    handler, smtp = sink
    first = _run(knot_dns, smtp, message(), settings={"dmarc_forensic_rate": 2})
    for _ in range(3):
        _run(knot_dns, smtp, message(), settings={"dmarc_forensic_rate": 2}, services_ctx=first)
    assert len(handler.envelopes) == 2


def test_unreachable_smtp_is_logged_not_raised(knot_dns):
    ctx = _run(knot_dns, f"127.0.0.1:{free_port()}", message())
    assert any("failure report not sent" in line for line in ctx.log_lines)
