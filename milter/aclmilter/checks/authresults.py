"""Our Authentication-Results header (RFC 8601) and removal of forged ones.

After the DATA ACL, every incoming A-R field that carries our authserv-id is removed
(RFC 8601 §5: it claims to come from inside our trust boundary but did not), highest index
first, and one A-R field with the SPF, DKIM and DMARC results of this message is inserted at
the top. All text comes from authres; values from the network are checked so that no CR/LF
or stray syntax reaches the header.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any


from .. import registry
from ..actions import HeaderAdd, HeaderPosition, HeaderRemove, clean_line
from .arc import authres_fragment as arc_result
from ..hostname import primary_hostname
from .dkim import DkimResult
from .authserv_id import claims as claims_authserv_id
from .dmarc_upstream import authres

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext
    from .dmarc import DmarcResult

HEADER = "Authentication-Results"
_SAFE_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
_REASON_JUNK = re.compile(r"[^A-Za-z0-9 .,:_=@/+-]")
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9._@+=/-]{1,255}\Z")


def authserv_id(ctx: "EvalContext") -> str:
    """Our authserv-id: settings.authserv_id, else the primary host name (an FQDN by default)."""
    return str(ctx.setting("authserv_id") or primary_hostname(ctx))


def _domain(value: str) -> str | None:
    return value.lower() if value and _SAFE_DOMAIN.match(value) else None


def _token(value: str) -> str | None:
    return value if value and _SAFE_TOKEN.match(value) else None


def dkim_results(res: DkimResult) -> list[Any]:
    """One authres DKIM result per signature (header.d/i/s/b only when syntactically safe)."""
    out = []
    for sig in res.signatures:
        # The reason may echo network text (dkimpy quotes tags): keep it to harmless characters.
        reason = _REASON_JUNK.sub("", clean_line(sig.reason))[:120] if sig.reason and sig.status.value != "pass" else None
        made = authres.DKIMAuthenticationResult(
            result=sig.status.value, reason=reason, header_d=_domain(sig.domain),
            header_i=_token(sig.identity), header_s=_token(sig.selector))
        b = _token(sig.header_b)
        if b:   # RFC 6008 header.b tells several signatures of one domain apart
            made.properties.append(authres.AuthenticationResultProperty("header", "b", b))
        out.append(made)
    if not out:
        out.append(authres.DKIMAuthenticationResult(result="none"))
    return out


def dmarc_result(res: "DmarcResult") -> Any | None:
    """The authres DMARC result (None when DMARC was switched off)."""
    if res.status.value == "off":
        return None
    comment = None
    if res.domain_policy is not None:
        dis = res.disposition.value if res.disposition else "none"
        comment = f"p={res.domain_policy.value} dis={dis}"
        if getattr(res, "override", ""):
            comment += f" override={res.override}"
    # policy.dmarc is the policy applied, the word $dmarc_status says (after pct / t=y), and
    # only for a fail; the record's own p= stays in the comment.
    applied = res.disposition.value if res.result == "fail" and res.disposition is not None else None
    return authres.dmarc.DMARCAuthenticationResult(
        result=res.result, result_comment=comment, header_from=_domain(res.from_domain), policy=applied)


def _spf_result(ctx: "EvalContext") -> Any | None:
    """SPF's own A-R fragment if the SPF module offers one and SPF ran for this message."""
    if not ctx.has_result("spf"):
        return None
    try:
        from . import spf as spf_mod   # another feature's module; may not exist
    except ImportError:
        return None
    fragment = getattr(spf_mod, "authres_fragment", None)
    if fragment is None:
        return None
    made = fragment(ctx.result("spf"))
    if made is None or hasattr(made, "method"):
        return made
    parsed = authres.all_features().parse_value(f"x; {clean_line(str(made))}")
    return parsed.results[0] if parsed.results else None


def build_header(ctx: "EvalContext", results: list[Any]) -> str:
    """Return the A-R value (without the field name); CR/LF can never be in it."""
    header = authres.AuthenticationResultsHeader(authserv_id=authserv_id(ctx), results=results)
    return clean_line(header.header_value())


def dmarc_ar_header(ctx: "EvalContext", res: "DmarcResult") -> str:
    """`Authentication-Results: <id>; dmarc=...` for `add_header = $dmarc_ar_header`."""
    r = dmarc_result(res)
    return f"{HEADER}: {build_header(ctx, [r] if r is not None else [])}"


def forged_indexes(headers: list[tuple[str, str]], our_id: str) -> list[int]:
    """1-based occurrence numbers of A-R fields claiming our authserv-id, highest first.

    An id written as `<ours>/<jobid>` (OpenDMARC's AuthservIDWithJobID) is ours too; so are
    the quoted, trailing-dot, other-case, folded and comment-first spellings of it.
    """
    found = []
    n = 0
    for name, value in headers:
        if name.strip().lower() != HEADER.lower():
            continue
        n += 1
        if claims_authserv_id(value, our_id):
            found.append(n)
    return sorted(found, reverse=True)


@registry.eom_hook("authresults", phase="after_data", order=10,
                   wanted=lambda policy: bool(policy.settings.get("authserv_id")))
def authresults_hook(ctx: "EvalContext", decision: Any) -> None:
    """Remove forged A-R fields and insert ours at the top.

    Only when settings.authserv_id is set (the identity we vouch for must be chosen by the
    admin), and not when the message is refused anyway.
    """
    txn = ctx.txn
    if txn is None or txn.edits is None or not ctx.setting("authserv_id") \
            or getattr(decision, "is_reject", False) or getattr(decision, "is_tempfail", False):
        return
    for idx in forged_indexes(txn.headers, authserv_id(ctx)):
        txn.edits.header_removes.append(HeaderRemove(name=HEADER, index=idx, source="authresults"))
    results: list[Any] = []
    spf = _spf_result(ctx)
    if spf is not None:
        results.append(spf)
    results.extend(dkim_results(ctx.check("dkim")))
    arc = arc_result(ctx)
    if arc is not None:
        results.append(arc)
    if ctx.has_result("dmarc"):
        dm = dmarc_result(ctx.result("dmarc"))
        if dm is not None:
            results.append(dm)
    txn.edits.add_header(HeaderAdd(HEADER, build_header(ctx, results), HeaderPosition.START, "authresults"))
