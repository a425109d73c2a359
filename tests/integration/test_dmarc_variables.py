# SPDX-License-Identifier: GPL-3.0-or-later
"""The DMARC variables say exactly what docs/dmarc.md says: $dmarc_used_domain only where a
record was used, DMARCbis selection among valid records, A-R policy.dmarc = $dmarc_status."""

from __future__ import annotations

import authres
import pytest

from aclmilter.checks.dmarc import DmarcStatus
from tests.fixtures.dmarc.ctxhelp import make_ctx, message, settings_for

pytestmark = pytest.mark.integration

BAD_IP = "198.51.100.7"


def _ctx(dns, from_, **settings):
    return make_ctx(message(from_=from_), settings=settings_for(dns, **settings), client=BAD_IP)


@pytest.mark.parametrize("from_,status", [
    ("a@norec.dmarcx", DmarcStatus.NORECORD),
    ("a@multi.dmarcx", DmarcStatus.NORECORD),       # two records: none is used
    ("a@invalid.dmarcx", DmarcStatus.NORECORD),     # an invalid record is not used
])
def test_used_domain_is_empty_without_a_record(knot_dns, from_, status):
    ctx = _ctx(knot_dns.settings(), from_)
    assert ctx.check("dmarc").status is status
    assert ctx.var("dmarc_used_domain") == "" and ctx.var("dmarc_domain_policy") == ""
    assert ctx.var("dmarc_from_domain") == from_.split("@")[1]


def test_used_domain_is_empty_on_dns_failure(silent_dns):
    ctx = _ctx(silent_dns.settings(timeout=0.2, lifetime=0.4, budget=0.6), "a@pass.dmarcx")
    assert ctx.check("dmarc").status is DmarcStatus.TEMPERROR
    assert ctx.var("dmarc_used_domain") == ""


@pytest.mark.parametrize("from_,used", [
    ("a@pass.dmarcx", "pass.dmarcx"),
    ("a@sub.org.dmarcx", "org.dmarcx"),      # the Organizational Domain's record
])
def test_used_domain_names_the_record_used(knot_dns, from_, used):
    ctx = _ctx(knot_dns.settings(), from_)
    ctx.check("dmarc")
    assert ctx.var("dmarc_used_domain") == used


def test_dmarcbis_selection_ignores_an_invalid_record_above(knot_dns):
    ctx = _ctx(knot_dns.settings(), "a@mail.example.bisx", dmarc_discovery="dmarcbis")
    res = ctx.check("dmarc")
    assert res.status is DmarcStatus.REJECT and res.org_domain == "example.bisx"
    assert ctx.var("dmarc_used_domain") == "example.bisx"


def test_dmarcbis_only_invalid_records_is_still_an_error(knot_dns):
    ctx = _ctx(knot_dns.settings(), "a@mail.onlybad.bisx", dmarc_discovery="dmarcbis")
    res = ctx.check("dmarc")
    assert res.status is DmarcStatus.NORECORD and res.result == "permerror"
    assert ctx.var("dmarc_used_domain") == ""


def _policy_dmarc(header: str) -> str | None:
    parsed = authres.all_features().parse_value(header.partition(":")[2].strip())
    [dm] = [r for r in parsed.results if r.method == "dmarc"]
    for prop in dm.properties:
        if prop.type == "policy" and prop.name == "dmarc":
            return prop.value
    return None


def test_ar_policy_dmarc_agrees_with_dmarc_status_under_pct(knot_dns):
    seen = set()
    for seed in range(30):
        ctx = make_ctx(message(from_="a@pct50.dmarcx"), settings=settings_for(knot_dns.settings()),
                       client=BAD_IP, seed=seed)
        status = ctx.var("dmarc_status")
        assert _policy_dmarc(ctx.var("dmarc_ar_header")) == status
        assert "p=reject" in ctx.var("dmarc_ar_header")          # the record's own policy stays in the comment
        seen.add(status)
    assert seen == {"reject", "quarantine"}


@pytest.mark.parametrize("from_,client,policy", [
    ("a@pass.dmarcx", "192.0.2.1", None),           # relaxed SPF pass: no policy.dmarc
    ("a@none.dmarcx", BAD_IP, "none"),
    ("a@norec.dmarcx", BAD_IP, None),
])
def test_ar_policy_dmarc_only_for_a_fail(knot_dns, from_, client, policy):
    ctx = make_ctx(message(from_=from_), settings=settings_for(knot_dns.settings()), client=client,
                   sender="bounce@pass.dmarcx")
    assert _policy_dmarc(ctx.var("dmarc_ar_header")) == policy
