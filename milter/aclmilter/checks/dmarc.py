"""DMARC evaluation (RFC 7489 with RFC 9091 `np`; RFC 9989 discovery as an option).

The `dmarc` check reads the SPF and DKIM *result objects* (declared needs), finds the one
From domain, discovers the policy record, checks identifier alignment and applies `pct`
(or `t=y`). It returns a frozen `DmarcResult` with an Exim-style `status` word for
`dmarc_status`; it never decides what happens to the message.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .. import registry
from ..errors import LookupDefer
from .dkim import DkimResult, DkimStatus
from .dmarc_arc import trusted_override
from .dmarc_discovery import Discovery, Found, OrgDomains, author_exists, discover
from .dmarc_from import FromDomain, author_domain, to_alabel
from .dmarc_psl import PslUnavailable
from .dmarc_record import DmarcRecord, Policy

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext


class DmarcStatus(enum.Enum):
    """The words `dmarc_status` tests (Exim's names)."""

    ACCEPT = "accept"          # aligned pass
    REJECT = "reject"          # failed; the record asks for reject (and the message was sampled)
    QUARANTINE = "quarantine"  # failed; quarantine (or a non-sampled reject)
    NONE = "none"              # failed under p=none (or a non-sampled quarantine)
    NORECORD = "norecord"      # no usable DMARC record
    NOFROM = "nofrom"          # no single From domain
    TEMPERROR = "temperror"    # DNS error: no conclusion possible
    OFF = "off"                # control = dmarc_disable_verify


@dataclass(frozen=True)
class SpfFacts:
    """What DMARC needs from SPF: result word and the identity it authenticated."""

    result: str               # pass fail softfail neutral none temperror permerror
    domain: str               # MAIL FROM domain, or HELO name for the null sender
    scope: str                # "mfrom" | "helo"


@dataclass(frozen=True)
class DmarcResult:
    status: DmarcStatus
    result: str                           # A-R word: pass fail none temperror permerror
    text: str                             # $dmarc_status_text
    from_domain: str = ""
    from_address: str = ""
    policy_domain: str = ""               # $dmarc_used_domain
    org_domain: str = ""
    record: DmarcRecord | None = None
    domain_policy: Policy | None = None   # policy the record asks for this From domain
    disposition: Policy | None = None     # after pct / t=y
    sampled: bool = True
    spf: SpfFacts | None = None
    spf_aligned: bool | None = None       # None: not evaluated (no record)
    dkim_aligned: bool | None = None
    dkim: DkimResult | None = None
    discovery: Discovery | None = None
    override: str = ""                    # "trusted_forwarder": a trusted ARC sealer vouched (dmarc_arc.py)

    @property
    def history_policy_code(self) -> int:
        """OpenDMARC policy code: 14 absent, 15 pass, 16 reject, 17 quarantine, 18 none."""
        if self.status is DmarcStatus.ACCEPT:
            return 15
        if self.domain_policy is None or self.status in (DmarcStatus.TEMPERROR, DmarcStatus.NORECORD):
            return 14
        return {Policy.REJECT: 16, Policy.QUARANTINE: 17, Policy.NONE: 18}[self.domain_policy]


def _word(value: Any) -> str:
    """The lower-case result word of an enum member or a string."""
    if isinstance(value, enum.Enum):
        value = value.value if isinstance(value.value, str) else value.name
    return str(value or "none").lower()


def spf_facts(ctx: "EvalContext", spf_result: Any) -> SpfFacts:
    """Read SPF's result object. DMARC uses the MAIL FROM identity, or HELO only for `<>`
    (RFC 7489 §3.1.2; CVE-2019-20790 came from taking a HELO pass for a MAIL FROM pass)."""
    sender = ctx.txn.sender if ctx.txn else ""
    if sender:
        domain, scope = sender.rpartition("@")[2], "mfrom"
    else:
        domain, scope = ctx.conn.helo, "helo"
    word = _word(getattr(spf_result, "result", spf_result))
    identity = getattr(spf_result, "identity", None)
    if identity is not None and scope == "mfrom" and _word(identity) == "helo":
        word = "none"   # SPF judged the HELO name, which says nothing about this MAIL FROM
    return SpfFacts(word, (to_alabel(domain) or domain.lower()), scope)


def _policy_for(disc: Discovery, author: str, exists: Any) -> Policy:
    """p for the record's own domain; for a subdomain np (non-existent) > sp > p."""
    rec = disc.record
    assert rec is not None
    if disc.policy_domain == author:
        return rec.p
    if rec.np is not None and rec.np is not (rec.sp or rec.p) and not exists(author):
        return rec.np
    return rec.sp or rec.p


#: RFC 7489 §6.6.1 "the most strict policy selected among the checks that fail"; without a
#: failure, a temporary error wins over a pass (one domain could not be judged), a pass over
#: no record.
_STRICTNESS = (DmarcStatus.REJECT, DmarcStatus.QUARANTINE, DmarcStatus.NONE, DmarcStatus.TEMPERROR,
               DmarcStatus.ACCEPT, DmarcStatus.NORECORD)


def evaluate(ctx: "EvalContext", spf: SpfFacts, dkim_res: DkimResult, frm: FromDomain, orgs: OrgDomains
             ) -> DmarcResult:
    """Evaluate DMARC for one message. Returns a DmarcResult (never raises for DNS trouble).

    A valid From with mailboxes in several domains is evaluated for each domain and the
    strictest outcome is returned (RFC 7489 §6.6.1); NOFROM only when there is no domain.
    """
    if frm.domain is None and frm.domains:
        results = [evaluate(ctx, spf, dkim_res, FromDomain(d), orgs) for d in frm.domains]
        worst = min(results, key=lambda r: _STRICTNESS.index(r.status))
        return replace(worst, text=f"{worst.text} (strictest of {len(results)} From domains: "
                                   f"{', '.join(frm.domains)})")
    if frm.domain is None:
        return DmarcResult(DmarcStatus.NOFROM, "permerror", frm.problem, spf=spf, dkim=dkim_res)
    author = frm.domain
    disc = discover(author, orgs)
    # $dmarc_used_domain: only where a record was actually used, never a guess
    base: dict[str, Any] = dict(from_domain=author, from_address=frm.address,
                policy_domain=disc.policy_domain if disc.record is not None else "",
                org_domain=disc.org_domain, spf=spf, dkim=dkim_res, discovery=disc)
    if disc.outcome is Found.TEMPERROR:
        return DmarcResult(DmarcStatus.TEMPERROR, "temperror", f"DMARC lookup failed: {disc.error}", **base)
    if disc.outcome is Found.NONE:
        return DmarcResult(DmarcStatus.NORECORD, "none", disc.error or "no DMARC record", **base)
    if disc.outcome is Found.INVALID:
        return DmarcResult(DmarcStatus.NORECORD, "permerror", f"invalid DMARC record: {disc.error}", **base)
    rec = disc.record
    assert rec is not None
    try:
        spf_ok = spf.result == "pass" and orgs.aligned(spf.domain, author, rec.aspf.value == "s")
        dkim_ok = any(s.status is DkimStatus.PASS and orgs.aligned(s.domain, author, rec.adkim.value == "s")
                      for s in dkim_res.signatures)
        dkim_temp = any(s.status is DkimStatus.TEMPERROR and orgs.aligned(s.domain, author, rec.adkim.value == "s")
                        for s in dkim_res.signatures)
        spf_temp = spf.result == "temperror" and orgs.aligned(spf.domain, author, rec.aspf.value == "s")
    except LookupDefer as exc:
        return DmarcResult(DmarcStatus.TEMPERROR, "temperror", f"DMARC alignment lookup failed: {exc}",
                           record=rec, **base)
    mode = ctx.setting("dmarc_discovery") or "rfc7489"
    policy = _policy_for(disc, author, lambda d: author_exists(ctx.services.get("dns"), d, mode))
    base.update(record=rec, domain_policy=policy, spf_aligned=spf_ok, dkim_aligned=dkim_ok)
    if spf_ok or dkim_ok:
        how = " and ".join(x for x, ok in (("SPF", spf_ok), ("DKIM", dkim_ok)) if ok)
        return DmarcResult(DmarcStatus.ACCEPT, "pass", f"aligned {how} pass for {author}", **base)
    if spf_temp or dkim_temp:
        # RFC 7489 §6.6.2: a temporary error where an aligned pass might have been: no verdict.
        return DmarcResult(DmarcStatus.TEMPERROR, "temperror",
                           f"no aligned pass for {author} and a temporary authentication error", **base)
    sampled = True
    applied = policy
    if ctx.setting("dmarc_discovery") == "dmarcbis":
        if rec.testing:
            applied, sampled = policy.one_lower(), False
    elif rec.pct < 100:
        sampled = ctx.services.rng.randrange(100) < rec.pct
        if not sampled:
            applied = policy.one_lower()
    status = {Policy.REJECT: DmarcStatus.REJECT, Policy.QUARANTINE: DmarcStatus.QUARANTINE,
              Policy.NONE: DmarcStatus.NONE}[applied]
    note = "" if sampled else f" (not sampled: {policy.value} applied as {applied.value})"
    return DmarcResult(status, "fail", f"DMARC failed for {author}, policy {policy.value}{note}",
                       disposition=applied, sampled=sampled, **base)


@registry.check("dmarc_author")
def dmarc_author_check(ctx: "EvalContext") -> FromDomain:
    """The RFC5322.From author domain(s) of the message; no DNS (RFC 7489 §6.6.1)."""
    assert ctx.txn is not None
    return author_domain(ctx.txn.headers)


@registry.check("dmarc", needs=("spf", "dkim", "dmarc_author"))
def dmarc_check(ctx: "EvalContext") -> DmarcResult:
    """Evaluate DMARC once per message. Returns DmarcResult; OFF when disabled by control."""
    txn = ctx.txn
    assert txn is not None
    if "dmarc_disable_verify" in txn.controls or "dmarc_disable_verify" in ctx.conn.controls:
        return DmarcResult(DmarcStatus.OFF, "none", "DMARC verification disabled")
    frm: FromDomain = ctx.check("dmarc_author")
    spf = spf_facts(ctx, ctx.check("spf"))
    dkim_res: DkimResult = ctx.check("dkim")
    dns = ctx.services.get("dns")
    orgs = OrgDomains(ctx.setting("dmarc_discovery") or "rfc7489", lambda n: list(dns.lookup(n, "TXT")),
                      ctx.services.get("dmarc_psl"))
    try:
        return trusted_override(ctx, evaluate(ctx, spf, dkim_res, frm, orgs), DmarcStatus.NONE, orgs)
    except PslUnavailable as exc:
        # The PSL file vanished after the policy was loaded: no verdict rather than a wrong one.
        return DmarcResult(DmarcStatus.TEMPERROR, "temperror", str(exc), spf=spf, dkim=dkim_res)
