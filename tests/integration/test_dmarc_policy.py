# SPDX-License-Identifier: GPL-3.0-or-later
"""The seed's DMARC ACLs through the real loader and engine, with real DNS (Knot)."""

from __future__ import annotations

import pytest

from aclmilter import engine
from aclmilter.errors import PolicyErrors
from aclmilter.outcome import Result
from aclmilter.policy.loader import load_text
from aclmilter.stages import Stage
from aclmilter.state import Recipient
from tests.fixtures.dmarc.ctxhelp import PSL, make_ctx, message, sign

pytestmark = pytest.mark.integration

# Without settings.authserv_id (with it the A-R header is automatic and $dmarc_ar_header is
# refused at load): the seed's `add_header = $dmarc_ar_header` then writes the only one.
POLICY = """
settings:
  primary_hostname: mx.test.invalid
  dmarc_tld_file: {psl}
  dns: {{nameservers: ["{ns}"], timeout: 2, lifetime: 4, budget: 10}}
acl:
  rcpt:
    - warn:
        domains: local.invalid
        control: dmarc_disable_verify
    - warn:
        "!domains": broken.invalid
        control: dmarc_enable_forensic
    - warn:
        condition: "${{if eq{{$local_part}}{{list}}}}"
        set: {{acl_m_mailing_list: "1"}}
    - accept: {{}}
  data:
    - warn:
        dmarc_status: "accept : none : off"
        "!authenticated": "*"
        log_message: "DMARC DEBUG: $dmarc_status $dmarc_used_domain"
        add_header: "$dmarc_ar_header"
    - warn:
        dmarc_status: quarantine
        "!authenticated": "*"
        set: {{acl_m_quarantine: "1"}}
    - deny:
        - condition: "${{if eq{{$dmarc_domain_policy}}{{reject}}}}"
        - condition: "${{if eq{{$acl_m_mailing_list}}{{1}}}}"
        - message: "Messages from $dmarc_used_domain break mailing lists"
    - deny:
        dmarc_status: reject
        "!authenticated": "*"
        message: "Message from $dmarc_used_domain failed sender's DMARC policy, REJECT"
    - accept: {{}}
"""


def _session(knot, raw, rcpt="bob@rcpt.invalid", **kw):
    policy = load_text(POLICY.format(psl=PSL, ns=knot.nameserver), "dmarc.yaml")
    ctx = make_ctx(raw, settings=policy.settings, **kw)
    ctx.policy = policy
    ctx.txn.recipients = [Recipient(rcpt)]
    ctx.stage, ctx.rcpt = Stage.RCPT, ctx.txn.recipients[0]
    assert engine.run(ctx, policy.acl_for("rcpt")).result is Result.OK
    ctx.stage, ctx.rcpt = Stage.DATA, None
    return ctx, engine.run(ctx, policy.acl_for("data"))


def test_reject(knot_dns):
    ctx, d = _session(knot_dns, message(), client="198.51.100.7")
    assert d.result is Result.FAIL and d.reply.code == 550
    assert d.reply.lines == ("Message from pass.dmarcx failed sender's DMARC policy, REJECT",)
    assert ctx.txn.controls.get("dmarc_enable_forensic") == "1"


def test_pass_adds_ar_header(knot_dns):
    ctx, d = _session(knot_dns, sign(message()))
    assert d.result is Result.OK
    [add] = ctx.txn.edits.header_adds
    assert add.name == "Authentication-Results" and add.value.startswith("mx.test.invalid; dmarc=pass")


def test_mailing_list_deny_with_two_conditions(knot_dns):
    _, d = _session(knot_dns, sign(message()), rcpt="list@rcpt.invalid")
    assert d.result is Result.FAIL and d.reply.lines == ("Messages from pass.dmarcx break mailing lists",)


def test_quarantine_sets_flag(knot_dns):
    ctx, d = _session(knot_dns, message(from_="a@quar.dmarcx"))
    assert d.result is Result.OK and ctx.txn.acl_m["acl_m_quarantine"] == "1"


def test_disabled_is_off(knot_dns):
    ctx, d = _session(knot_dns, message(), rcpt="bob@local.invalid")
    assert d.result is Result.OK and ctx.var("dmarc_status") == "off"


@pytest.mark.parametrize("acl,needle", [
    ("rcpt:\n    - deny: {dmarc_status: reject}", "dmarc_status"),
    ("data:\n    - deny: {dmarc_status: rejected}", "unknown value 'rejected'"),
    ("data:\n    - warn: {control: dmarc_disable_verify}", "dmarc_disable_verify"),
])
def test_load_time_errors(acl, needle):
    with pytest.raises(PolicyErrors) as exc:
        load_text(f"acl:\n  {acl}\n", "bad.yaml")
    assert needle in str(exc.value) and "bad.yaml:" in str(exc.value)


def test_shipped_example_loads():
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "policies" / "examples" / "dmarc.yaml"
    policy = load_text(path.read_text(), str(path))
    assert policy.acl_for("data") is not None
