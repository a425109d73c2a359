# SPDX-License-Identifier: GPL-3.0-or-later
"""DMARC evaluation with real SPF, real DKIM and real DNS (Knot, dmarcx.zone)."""

from __future__ import annotations

import pytest

from aclmilter.checks.dmarc import DmarcStatus
from aclmilter.checks.dmarc_record import Policy
from tests.fixtures.dmarc.ctxhelp import make_ctx, message, settings_for, sign

pytestmark = pytest.mark.integration

GOOD_IP, BAD_IP = "192.0.2.1", "198.51.100.7"


def _dmarc(knot, raw, *, sender="bounce@pass.dmarcx", client=BAD_IP, seed=None, **settings):
    ctx = make_ctx(raw, settings=settings_for(knot.settings(), **settings), sender=sender, client=client, seed=seed)
    return ctx, ctx.check("dmarc")


def test_pass_by_dkim_alone(knot_dns):
    ctx, res = _dmarc(knot_dns, sign(message()))
    assert res.status is DmarcStatus.ACCEPT and res.result == "pass"
    assert (res.dkim_aligned, res.spf_aligned) == (True, False)
    assert ctx.var("dmarc_status") == "accept" and ctx.var("dmarc_used_domain") == "pass.dmarcx"
    assert ctx.var("dmarc_domain_policy") == "reject"
    assert ctx.var("dmarc_alignment_dkim") == "pass" and ctx.var("dmarc_alignment_spf") == "fail"
    assert ctx.var("dmarc_ar_header") == ("Authentication-Results: mx.test.invalid; dmarc=pass "
                                          "(p=reject dis=none) header.from=pass.dmarcx")


def test_pass_by_relaxed_spf_alone(knot_dns):
    _, res = _dmarc(knot_dns, message(), client=GOOD_IP)   # MAIL FROM bounce.pass.dmarcx: relaxed aligned
    assert res.status is DmarcStatus.ACCEPT and res.spf_aligned and not res.dkim_aligned


def test_fail_reject(knot_dns):
    ctx, res = _dmarc(knot_dns, message())
    assert res.status is DmarcStatus.REJECT and res.result == "fail"
    assert res.domain_policy is Policy.REJECT and res.disposition is Policy.REJECT
    assert "policy.dmarc=reject" in ctx.var("dmarc_ar_header")


def test_unaligned_third_party_signature_fails(knot_dns):
    from tests.fixtures.dmarc.ctxhelp import KEY_THIRD
    _, res = _dmarc(knot_dns, sign(message(), domain="third.dmarcx", key=KEY_THIRD))
    assert res.status is DmarcStatus.REJECT and res.dkim.passing_domains == ("third.dmarcx",)


@pytest.mark.parametrize("from_,status,policy", [
    ("a@quar.dmarcx", DmarcStatus.QUARANTINE, "quarantine"),
    ("a@none.dmarcx", DmarcStatus.NONE, "none"),
    ("a@norec.dmarcx", DmarcStatus.NORECORD, ""),
    ("a@multi.dmarcx", DmarcStatus.NORECORD, ""),
    ("a@invalid.dmarcx", DmarcStatus.NORECORD, ""),
    ("a@invalidrua.dmarcx", DmarcStatus.NONE, "none"),
    ("a@sub.org.dmarcx", DmarcStatus.QUARANTINE, "quarantine"),   # sp
    ("a@ghost.org.dmarcx", DmarcStatus.NONE, "none"),             # np (non-existent subdomain)
    ("a@x.bare.dmarcx", DmarcStatus.REJECT, "reject"),            # no sp: p applies
])
def test_policies(knot_dns, from_, status, policy):
    ctx, res = _dmarc(knot_dns, message(from_=from_), sender="x@elsewhere.dmarcx")
    assert res.status is status, res.text
    assert ctx.var("dmarc_domain_policy") == policy


def test_org_domain_fallback_used_domain(knot_dns):
    ctx, res = _dmarc(knot_dns, message(from_="a@sub.org.dmarcx"))
    assert ctx.var("dmarc_used_domain") == "org.dmarcx" and res.org_domain == "org.dmarcx"
    assert res.discovery.queries == ("_dmarc.sub.org.dmarcx", "_dmarc.org.dmarcx")


def test_invalid_record_is_permerror(knot_dns):
    _, res = _dmarc(knot_dns, message(from_="a@invalid.dmarcx"))
    assert res.result == "permerror"


def test_strict_vs_relaxed(knot_dns):
    raw = sign(message(from_="a@strict.dmarcx"), domain="pass.dmarcx")
    _, res = _dmarc(knot_dns, raw, sender="x@bounce.strict.dmarcx", client=GOOD_IP)
    assert res.spf.result == "pass" and not res.spf_aligned   # aspf=s: bounce.strict != strict
    assert res.status is DmarcStatus.REJECT
    _, relaxed = _dmarc(knot_dns, message(from_="a@sub.org.dmarcx"), sender="x@org.dmarcx", client=GOOD_IP)
    assert relaxed.spf_aligned and relaxed.status is DmarcStatus.ACCEPT


def test_helo_only_for_null_sender(knot_dns):
    ctx = make_ctx(message(), settings=settings_for(knot_dns.settings()), sender="", client=GOOD_IP,
                   helo="bounce.pass.dmarcx")
    res = ctx.check("dmarc")
    assert res.spf.scope == "helo" and res.spf.domain == "bounce.pass.dmarcx" and res.status is DmarcStatus.ACCEPT


def test_pct0_reject_becomes_quarantine(knot_dns):
    ctx, res = _dmarc(knot_dns, message(from_="a@pct0.dmarcx"))
    assert res.status is DmarcStatus.QUARANTINE and not res.sampled
    assert ctx.var("dmarc_domain_policy") == "reject"


def test_pct50_is_seeded(knot_dns):
    outcomes = [_dmarc(knot_dns, message(from_="a@pct50.dmarcx"), seed=s)[1].status for s in range(40)]
    again = [_dmarc(knot_dns, message(from_="a@pct50.dmarcx"), seed=s)[1].status for s in range(40)]
    assert outcomes == again
    assert set(outcomes) == {DmarcStatus.REJECT, DmarcStatus.QUARANTINE}


def test_temperror_on_silent_dns(silent_dns):
    dns = silent_dns.settings(timeout=0.2, lifetime=0.4, budget=0.6)
    ctx = make_ctx(message(), settings=settings_for(dns))
    res = ctx.check("dmarc")
    assert res.status is DmarcStatus.TEMPERROR and res.result == "temperror"


@pytest.mark.parametrize("from_,problem", [
    (None, "no From header field"),
    ("group: a@pass.dmarcx;", "From uses group syntax"),
    ("a@pass.dmarcx <b@quar.dmarcx>", "From header field does not parse"),
])
def test_nofrom(knot_dns, from_, problem):
    raw = message(from_=from_ or "x")
    if from_ is None:
        raw = raw.replace(b"From: x\r\n", b"")
    ctx, res = _dmarc(knot_dns, raw)
    assert res.status is DmarcStatus.NOFROM and res.text == problem
    assert ctx.var("dmarc_status") == "nofrom"


@pytest.mark.parametrize("from_,status,domain", [
    # RFC 7489 §6.6.1: each domain is evaluated, the strictest failing policy applies
    ("a@none.dmarcx, b@quar.dmarcx", DmarcStatus.QUARANTINE, "quar.dmarcx"),
    ("a@norec.dmarcx, b@pass.dmarcx", DmarcStatus.REJECT, "pass.dmarcx"),
    ("a@norec.dmarcx, b@none.dmarcx", DmarcStatus.NONE, "none.dmarcx"),
])
def test_multi_domain_from_takes_the_strictest(knot_dns, from_, status, domain):
    ctx, res = _dmarc(knot_dns, message(from_=from_))
    assert res.status is status and res.from_domain == domain
    assert "strictest of 2 From domains" in res.text and ctx.var("dmarc_nofrom_reason") == ""


@pytest.mark.parametrize("from_", [
    "Support <jösé@pass.dmarcx>",            # RFC 6532 local part: Python reports a defect
    "jösé@pass.dmarcx",
    "Support <support@pass.dmarcx",          # missing '>'
    "support@pass.dmarcx (unterminated",
])
def test_defective_from_with_one_domain_is_evaluated(knot_dns, from_):
    """The p=reject bypass: a parse defect that leaves one domain must not become nofrom."""
    ctx, res = _dmarc(knot_dns, message(from_=from_))
    assert res.status is DmarcStatus.REJECT and res.from_domain == "pass.dmarcx"
    assert ctx.var("dmarc_nofrom_reason") == ""


def test_nofrom_reason_needs_no_dmarc(knot_dns):
    ctx = make_ctx(message(from_="a@pass.dmarcx <b@quar.dmarcx>"), settings=settings_for(knot_dns.settings()))
    assert ctx.var("dmarc_nofrom_reason") == "From header field does not parse"
    assert not ctx.has_result("dmarc") and not ctx.has_result("dkim")


def test_two_from_fields(knot_dns):
    raw = b"From: a@pass.dmarcx\r\n" + message(from_="b@pass.dmarcx")
    _, res = _dmarc(knot_dns, raw)
    assert res.status is DmarcStatus.NOFROM


def test_idn_from(knot_dns):
    _, res = _dmarc(knot_dns, message(from_="Ü <u@bücher.dmarcx>"))
    assert res.from_domain == "xn--bcher-kva.dmarcx" and res.status is DmarcStatus.NORECORD


def test_disabled_is_off(knot_dns):
    ctx = make_ctx(message(), settings=settings_for(knot_dns.settings()), controls=("dmarc_disable_verify",))
    assert ctx.check("dmarc").status is DmarcStatus.OFF and ctx.var("dmarc_status") == "off"


# ---- DMARCbis (RFC 9989) ------------------------------------------------------------------

def test_dmarcbis_tree_walk_reaches_psd(knot_dns):
    ctx, res = _dmarc(knot_dns, message(from_="a@a.b.walk.dmarcx"), dmarc_discovery="dmarcbis")
    assert res.policy_domain == "dmarcx" and res.org_domain == "walk.dmarcx"
    assert res.status is DmarcStatus.REJECT
    assert res.discovery.queries == ("_dmarc.a.b.walk.dmarcx", "_dmarc.b.walk.dmarcx", "_dmarc.walk.dmarcx",
                                     "_dmarc.dmarcx")
    # RFC 7489 with the PSL never looks above the Organizational Domain: no record.
    _, old = _dmarc(knot_dns, message(from_="a@a.b.walk.dmarcx"))
    assert old.status is DmarcStatus.NORECORD


def test_dmarcbis_psd_n_is_org_domain_and_aligns(knot_dns):
    _, res = _dmarc(knot_dns, message(from_="a@x.y.deep.dmarcx"), sender="b@deep.dmarcx", client=GOOD_IP,
                    dmarc_discovery="dmarcbis")
    assert res.org_domain == "deep.dmarcx" and res.policy_domain == "deep.dmarcx"
    assert res.spf_aligned and res.status is DmarcStatus.ACCEPT


def test_dmarcbis_np_for_nonexistent(knot_dns):
    _, res = _dmarc(knot_dns, message(from_="a@nothere.walk.dmarcx"), dmarc_discovery="dmarcbis")
    assert res.domain_policy is Policy.REJECT and res.policy_domain == "dmarcx"


def test_dmarcbis_t_y_lowers_policy(knot_dns):
    _, res = _dmarc(knot_dns, message(from_="a@testing.dmarcx"), dmarc_discovery="dmarcbis")
    assert res.domain_policy is Policy.REJECT and res.status is DmarcStatus.QUARANTINE


def test_dmarcbis_at_most_8_queries(knot_dns):
    _, res = _dmarc(knot_dns, message(from_="a@a.b.c.d.e.f.g.h.i.j.walk.dmarcx"), dmarc_discovery="dmarcbis")
    assert len(res.discovery.queries) <= 8
    assert res.policy_domain == "dmarcx"


def test_spf_temperror_without_aligned_pass_is_temperror(knot_dns):
    from types import SimpleNamespace
    ctx = make_ctx(message(), settings=settings_for(knot_dns.settings()), spf=SimpleNamespace(result="temperror"))
    res = ctx.check("dmarc")
    assert res.status is DmarcStatus.TEMPERROR and res.result == "temperror"


def test_helo_identity_never_counts_for_a_mail_from(knot_dns):
    from types import SimpleNamespace
    from aclmilter.checks.spf import Identity
    spf = SimpleNamespace(result="pass", identity=Identity.HELO)
    ctx = make_ctx(message(), settings=settings_for(knot_dns.settings()), spf=spf, client="198.51.100.7")
    res = ctx.check("dmarc")
    assert res.spf.result == "none" and res.status is DmarcStatus.REJECT
