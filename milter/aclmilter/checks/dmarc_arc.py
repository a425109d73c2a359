# SPDX-License-Identifier: GPL-3.0-or-later
"""DMARC and ARC: a trusted sealer's chain as a local-policy override, and the history lines.

`settings.arc_trusted_sealers` lists the sealing domains (mailing lists, forwarders) whose
word we take. When DMARC fails, the ARC chain passes, and the newest set sealed by a trusted
domain carries ARC-Authentication-Results saying the message passed DMARC there (or had a
DKIM pass aligned with the From domain), the failure is overridden: the disposition becomes
`none`, `$dmarc_status` is `none`, the A-R says `dmarc=fail (p=... dis=none
override=trusted_forwarder)`, and the history record says `arc_policy 0` (OpenDMARC's ARC
override, which opendmarc-reports turns into the aggregate report's `<reason>` with
`arc=pass as[N].d=... as[N].s=...`). A broken chain (cv=fail, a missing instance, a tampered
signature) never overrides anything.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable


from .. import lazy, registry
from .. import validators as st
from .arc import ArcResult, ArcSet, ArcStatus
from .dmarc_record import Policy

json = lazy.module("json")     # for history lines of ARC-sealed messages only (lazy.py)

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext
    from .dmarc import DmarcResult, DmarcStatus
    from .dmarc_discovery import OrgDomains

OVERRIDE = "trusted_forwarder"     # RFC 7489 PolicyOverrideType


def _sealers(value: Any) -> tuple[str, ...]:
    return tuple(d.lower().rstrip(".") for d in st.string_list(value))


registry.setting("arc_trusted_sealers", _sealers, (),
                 "ARC sealing domains trusted to vouch for messages they changed: a DMARC failure "
                 "with a passing chain whose trusted sealer saw DMARC (or aligned DKIM) pass is "
                 "overridden (override=trusted_forwarder)")


def _vouches(arc_set: ArcSet, author: str, aligned: Callable[[str], bool]) -> bool:
    """True when a set's AAR says DMARC passed for `author`, or DKIM passed for a domain
    `aligned` with it (the record's adkim, Organizational Domains as DMARC itself uses).
    An AAR that does not parse vouches for nothing."""
    for r in arc_set.aar_results:
        props = {f"{p.type}.{p.name}".lower(): str(p.value) for p in r.properties}
        if r.result.lower() != "pass":
            continue
        if r.method == "dmarc" and props.get("header.from", "").lower() == author.lower():
            return True
        if r.method == "dkim" and aligned(props.get("header.d", "")):
            return True
    return False


def trusted_override(ctx: "EvalContext", res: "DmarcResult", none: "DmarcStatus",
                     orgs: "OrgDomains") -> "DmarcResult":
    """`res`, or its overridden form (status `none`, passed in by dmarc.py, which imports
    this module) when a trusted sealer vouches for a failing message."""
    sealers = ctx.setting("arc_trusted_sealers") or ()
    if not sealers or res.result != "fail" or ctx.txn is None:
        return res
    arc: ArcResult = ctx.check("arc")
    if arc.status is not ArcStatus.PASS:
        return res
    strict = res.record is not None and res.record.adkim.value == "s"

    def aligned(domain: str) -> bool:
        return bool(domain) and orgs.aligned(domain, res.from_domain, strict)

    for s in reversed(arc.sets):
        if s.seal_domain in sealers and _vouches(s, res.from_domain, aligned):
            return dataclasses.replace(
                res, status=none, disposition=Policy.NONE, override=OVERRIDE,
                text=f"{res.text}; overridden: arc=pass as[{s.instance}].d={s.seal_domain} is a trusted sealer")
    return res


def _remote_ip(arc_set: ArcSet) -> str:
    """The smtp.remote-ip (or client-ip) a set's AAR names, "" if none or not an address."""
    for r in arc_set.aar_results:
        for p in r.properties:
            if p.type == "smtp" and p.name in ("remote-ip", "client-ip"):
                value = str(p.value)
                return value if all(c in "0123456789abcdefABCDEF.:" for c in value) else ""
    return ""


def history_lines(res: "DmarcResult", arc: ArcResult | None) -> list[str]:
    """OpenDMARC 1.4.2's `arc` and `arc_policy` lines (reference dmarc.md §1.2 rows 19-20).

    `arc 0` for a passing chain, else 7; `arc_policy 0` when the trusted-sealer override
    applied, else 2; then one JSON object per ARC-Seal in OpenDMARC's exact layout.
    """
    if arc is None:
        return ["arc 7", "arc_policy 2 json:[]"]
    seals = ", ".join('{ "i": %d, "d":%s, "s":%s, "ip":%s }' % (
        s.instance, json.dumps(s.seal_domain), json.dumps(s.seal_selector), json.dumps(_remote_ip(s)))
        for s in arc.sets if s.seal_domain and s.seal_selector)
    arc_code = 0 if arc.status is ArcStatus.PASS else 7
    policy_code = 0 if getattr(res, "override", "") == OVERRIDE else 2
    return [f"arc {arc_code}", f"arc_policy {policy_code} json:[{seals}]"]
