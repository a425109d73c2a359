"""Read DKIM (and SPF) results from Authentication-Results fields of trusted upstream hosts.

Only fields whose authserv-id is listed in `settings.trusted_authserv_ids` count (RFC 8601
§5: results from anyone else are claims, not facts). Returns None when nothing trusted is
present, so the caller verifies locally.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any


from .. import lazy
from .authserv_id import authserv_id, normalize
from .dkim import DkimResult, DkimSignature, DkimStatus

# authres loads when a header is built or parsed, not by `aclmilter check` (lazy.py)
if TYPE_CHECKING:  # pragma: no cover  (at run time the module loads on first use: lazy.py)
    import authres
    from ..context import EvalContext
else:
    authres = lazy.module("authres")

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_DOMAIN = re.compile(r"^[A-Za-z0-9.-]{1,253}\Z")   # CVE-2020-12272: reject `a.net(.b.com` style values


@functools.cache
def _features() -> Any:
    return authres.all_features()


def parse_ar(value: str) -> "authres.AuthenticationResultsHeader | None":
    """Parse one A-R value (folding removed); None if it does not parse."""
    try:
        return _features().parse_value(_FOLD.sub("", value).strip())
    except Exception:  # noqa: BLE001 - authres raises several types on hostile input
        return None


def trusted_upstream_dkim(ctx: "EvalContext") -> DkimResult | None:
    """Return the DKIM results of the first trusted A-R field that has any, else None."""
    trusted = {normalize(t) for t in (ctx.setting("trusted_authserv_ids") or ())}
    if not trusted or ctx.txn is None:
        return None
    for value in ctx.txn.header_values("Authentication-Results"):
        # read from the raw value, so a field too broken for authres still names its id
        if authserv_id(value) not in trusted:
            continue
        parsed = parse_ar(value)
        if parsed is None:
            continue
        sigs = []
        for res in parsed.results:
            if str(res.method).lower() != "dkim":
                continue
            d = str(getattr(res, "header_d", "") or "").lower()
            if d and not _DOMAIN.match(d):
                continue
            try:
                status = DkimStatus(str(res.result).lower())
            except ValueError:
                status = DkimStatus.NEUTRAL
            if status is DkimStatus.NONE:
                continue
            sigs.append(DkimSignature(d, str(getattr(res, "header_s", "") or ""),
                                      str(getattr(res, "header_i", "") or (f"@{d}" if d else "")),
                                      str(getattr(res, "header_a", "") or ""), status,
                                      f"from trusted A-R of {parsed.authserv_id}",
                                      str(getattr(res, "header_b", "") or "")))
        if sigs:
            return DkimResult(tuple(sigs), 0, f"upstream:{str(parsed.authserv_id).lower()}")
    return None
