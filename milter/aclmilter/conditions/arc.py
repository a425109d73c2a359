# SPDX-License-Identifier: GPL-3.0-or-later
"""ARC: the `$arc_*` variables, `settings.arc_sign` and the sealing of our own verdict.

Verification lives in checks/arc.py (our A-R gets `arc=` for every sealed message) and the
DMARC override for trusted sealers in checks/dmarc_arc.py (`settings.arc_trusted_sealers`).

`settings.arc_sign: {domain: ..., selector: ..., key_file: ...}` makes a host that forwards
add its own ARC set at end of message: the ARC-Authentication-Results are our own A-R
(so `settings.authserv_id` must be set), `cv=` is our verdict on the incoming chain, and the
ARC-Message-Signature covers the headers we do not change. A message refused or deferred is
not sealed; a chain whose verification hit a DNS error is not sealed either (no `cv` can be
given honestly), which is logged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any


from .. import registry
from ..actions import HeaderAdd, HeaderPosition
from ..checks.arc import ArcResult, ArcStatus
from ..checks.authresults import HEADER, authserv_id
from ..checks.dkim import build_message, dkim
from ..context import EvalContext
from ..errors import SyntaxProblem
from ..stages import Stage

log = logging.getLogger("aclmilter.arc")

_STAGES = Stage.DATA | Stage.DELIVER
#: Headers our seal signs when present (never ones a later hop or we ourselves add or change).
SIGNED = ("from", "to", "cc", "subject", "date", "message-id", "reply-to", "in-reply-to",
          "references", "mime-version", "content-type", "content-transfer-encoding", "list-id")


def _arc(ctx: EvalContext) -> ArcResult | None:
    # Only once the message is there: a result memoised from an earlier stage (the dry run
    # reads every variable at every stage) would be "none" for want of headers.
    if ctx.txn is None or not ctx.stage & _STAGES:
        return None
    return ctx.check("arc")


@registry.variable("arc_status", _STAGES)
def _arc_status(ctx: EvalContext) -> str | None:
    """The ARC chain's status: pass, fail, none or temperror (DATA and DELIVER)."""
    res = _arc(ctx)
    return res.status.value if res else None


@registry.variable("arc_state", _STAGES)
def _arc_state(ctx: EvalContext) -> str | None:
    """Exim's name for `$arc_status`."""
    return _arc_status(ctx)


@registry.variable("arc_state_reason", _STAGES)
def _arc_state_reason(ctx: EvalContext) -> str | None:
    """Why the chain has its status (dkimpy's reason text)."""
    res = _arc(ctx)
    return res.reason if res else None


@registry.variable("arc_domains", _STAGES)
def _arc_domains(ctx: EvalContext) -> str | None:
    """The sealing domains, oldest instance first, as a colon-separated list."""
    res = _arc(ctx)
    return ":".join(res.domains) if res else None


@registry.variable("arc_oldest_pass", _STAGES)
def _arc_oldest_pass(ctx: EvalContext) -> str | None:
    """The lowest instance whose ARC-Message-Signature verifies (0 if none or the chain fails)."""
    res = _arc(ctx)
    return str(res.oldest_pass) if res else None


@dataclass(frozen=True)
class SignSettings:
    domain: str
    selector: str
    key: bytes
    key_file: str


def _sign_settings(value: Any) -> SignSettings | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"domain", "selector", "key_file"} \
            or not {"domain", "selector", "key_file"} <= set(value):
        raise SyntaxProblem("arc_sign is a mapping with exactly domain, selector and key_file")
    domain, selector, path = (str(value[k]).strip() for k in ("domain", "selector", "key_file"))
    if not domain or not selector or any(c in domain + selector for c in " ;=\r\n\t"):
        raise SyntaxProblem("arc_sign: bad domain or selector")
    try:
        with open(path, "rb") as fh:
            key = fh.read()
    except OSError as exc:
        raise SyntaxProblem(f"arc_sign: cannot read key_file {path}: {exc.strerror or exc}") from None
    try:
        if b"PRIVATE KEY" not in key:
            raise ValueError("no PEM block")
        dkim.crypto.parse_pem_private_key(key)
    except Exception as exc:  # noqa: BLE001 - dkimpy raises several types for a bad key
        raise SyntaxProblem(f"arc_sign: {path} holds no usable PEM private key ({exc})") from None
    return SignSettings(domain.lower(), selector, key, os.path.abspath(path))


registry.setting("arc_sign", _sign_settings, None,
                 "seal forwarded mail with our own ARC set: {domain, selector, key_file} "
                 "(needs authserv_id: our A-R becomes the ARC-Authentication-Results)")


def _unfold(line: bytes) -> tuple[str, str]:
    name, _, value = line.decode("ascii").partition(":")
    return name, value.strip().replace("\r\n", "\n")


def seal(ctx: EvalContext, signer: SignSettings) -> list[tuple[str, str]]:
    """Our ARC set for the message as it will leave (our A-R on top, forged ones gone).

    Returns [(name, value)] in top-to-bottom order (ARC-Seal first); [] when no seal can be
    given (no A-R of ours, or a temperror chain)."""
    txn = ctx.txn
    assert txn is not None and txn.edits is not None
    ours = [a for a in txn.edits.header_adds if a.name == HEADER and a.source == "authresults"]
    if not ours:
        return []
    arc: ArcResult = ctx.check("arc")
    if arc.status is ArcStatus.TEMPERROR:
        log.warning("%s not ARC-sealed: the incoming chain could not be verified now", txn.queue_id or "-")
        return []
    me = authserv_id(ctx).lower()
    removed = {r.index for r in txn.edits.header_removes if r.name == HEADER}
    headers: list[tuple[str, str]] = [(HEADER, ours[0].value)]
    n = 0
    for name, value in txn.headers:
        if name.lower() == HEADER.lower():
            n += 1
            if n in removed:
                continue
        headers.append((name, value))
    message = build_message(headers, txn.body.read(), ctx.setting("dkim_header_leading_space") or "auto")
    present = {name.lower() for name, _v in txn.headers}
    include = [h.encode() for h in SIGNED if h in present]
    lines = dkim.arc_sign(message, signer.selector.encode(), signer.domain.encode(), signer.key,
                          me.encode(), include_headers=include, timestamp=int(ctx.services.clock()))
    return [_unfold(line) for line in lines]


@registry.eom_hook("arc_sign", phase="after_deliver", order=95,
                   wanted=lambda policy: policy.settings.get("arc_sign") is not None
                   and bool(policy.settings.get("authserv_id")))
def _arc_sign_hook(ctx: EvalContext, _decision: Any) -> None:
    """Add our ARC set at the top of a message that will be delivered."""
    signer: SignSettings | None = ctx.setting("arc_sign")
    if signer is None or ctx.txn is None or ctx.txn.edits is None:
        return
    try:
        arc_set = seal(ctx, signer)
    except Exception as exc:  # noqa: BLE001 - a message we cannot seal is still delivered
        log.error("%s ARC sealing failed: %s", ctx.txn.queue_id or "-", exc)
        return
    for name, value in arc_set:          # top to bottom: ARC-Seal, -Message-Signature, -Authentication-Results
        ctx.txn.edits.add_header(HeaderAdd(name, value, HeaderPosition.START, "arc_sign"))
