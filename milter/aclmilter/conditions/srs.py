# SPDX-License-Identifier: GPL-3.0-or-later
"""SRS the way Exim >= 4.95 does it natively, for a Postfix that forwards mail.

- `settings.srs_secrets`: one or more secrets; the first one encodes, every one decodes
  (rotation: put the new secret first and keep the old one until its bounces are gone).
- `${srs_encode {secret}{return path}{original domain}}`: Exim's expansion item.
- `inbound_srs = <local part>` (RCPT/DELIVER): true when the local part is an SRS0 address that
  one of `srs_secrets` signed no more than `srs_max_age` days ago; sets `$srs_recipient`.
- `control = srs_forward[/domain]` (MAIL, RCPT, PREDATA, DATA): the message leaves with the
  SRS0 form of its sender at `domain` (default `settings.srs_domain`, else
  `primary_hostname`): a `chgfrom` at end of message. A null sender is never rewritten.
- `control = srs_reverse` (RCPT, after a true `inbound_srs`): the bounce goes to the original
  sender instead: the SRS recipient is removed and `$srs_recipient` added (recipient edits).

Format and why pysrs is not used: see checks/srs.py.
"""

from __future__ import annotations

from .. import registry
from .. import validators as st
from ..actions import RecipientAdd
from ..checks import srs as codec
from ..context import EvalContext
from ..errors import ExpansionFailed, SyntaxProblem
from ..expand import functions
from ..outcome import Result
from ..stages import Stage

_RCPT_STAGES = Stage.RCPT | Stage.DELIVER
_FORWARD_STAGES = Stage.MAIL | Stage.RCPT | Stage.PREDATA | Stage.DATA


def _secrets(value: object) -> tuple[str, ...]:
    secrets = st.string_list(value)
    if any(not s for s in secrets):
        raise SyntaxProblem("an SRS secret must not be empty")
    return secrets


registry.setting("srs_secrets", _secrets, (),
                 "SRS secrets, newest first: the first encodes (srs_forward), all decode "
                 "(inbound_srs); a YAML list or a colon list")
registry.setting("srs_max_age", st.number(0, 1000, integer=True), codec.MAX_AGE_DAYS,
                 "days an SRS0 address stays valid for inbound_srs (Exim: 10; the stamp wraps after 1024 days)")
registry.setting("srs_domain", st.optional_text, None,
                 "forwarding domain of SRS0 addresses made by control = srs_forward "
                 "(default: primary_hostname)")


def _srs_encode(ctx: EvalContext, args: list[str]) -> str:
    """`${srs_encode{secret}{return path}{domain}}`; an empty secret or domain is an error."""
    secret, return_path, domain = args
    if not secret or not domain.strip():
        raise ExpansionFailed("srs_encode: the secret and the domain must not be empty")
    return codec.encode(secret, return_path, domain.strip(), ctx.services.clock())


functions.register("srs_encode", 3, _srs_encode)


def _inbound_srs_expansion(ctx: EvalContext, args: list[str]) -> tuple[bool, dict[str, str]]:
    """`${if inbound_srs{local part}{secret}...}`, Exim's expansion condition: true for a
    valid SRS0 local part, binding `$srs_recipient`. As in Exim 4.96, an empty secret checks
    the syntax only (neither hash nor age)."""
    local_part, secret = args[0].strip(), args[1]
    if secret:
        found = codec.decode(local_part, (secret,), ctx.services.clock(), int(ctx.setting("srs_max_age")))
        recipient = found.recipient if found.status is codec.Status.OK else None
    else:
        recipient = codec.original(local_part)
    if recipient is None:
        return False, {}
    if ctx.rcpt is not None:
        ctx.rcpt.vars["srs_recipient"] = recipient
    return True, {"srs_recipient": recipient}


functions.register_condition("inbound_srs", 2, _inbound_srs_expansion)


@registry.condition("inbound_srs", _RCPT_STAGES, variables=("srs_recipient",), requires_setting="srs_secrets")
def _inbound_srs(ctx: EvalContext, local_part: str) -> Result:
    """OK when the argument (normally `$local_part`) is an SRS0 local part signed by one of
    `srs_secrets` and not older than `srs_max_age` days; `$srs_recipient` is then the original
    sender. FAIL otherwise (not SRS, forged hash, expired). Never DEFERs (no lookup is made);
    a policy using it without `srs_secrets` is refused at load."""
    # settings.srs_secrets is a non-empty tuple here: the loader refuses every use of
    # inbound_srs (a condition name is never an expansion) in a policy without it.
    found = codec.decode(local_part.strip(), ctx.setting("srs_secrets"), ctx.services.clock(),
                         int(ctx.setting("srs_max_age")))
    ctx.note("inbound_srs", local_part, found.status.value)
    if found.status is not codec.Status.OK:
        return Result.FAIL
    if ctx.rcpt is not None:
        ctx.rcpt.vars["srs_recipient"] = found.recipient
    return Result.OK


@registry.variable("srs_recipient", _RCPT_STAGES)
def _srs_recipient(ctx: EvalContext) -> str | None:
    """The original sender decoded by the last true `inbound_srs` for this recipient."""
    return ctx.rcpt.vars.get("srs_recipient") if ctx.rcpt is not None else None


@registry.control("srs_forward", _FORWARD_STAGES, takes_options=True, requires_setting="srs_secrets")
def _srs_forward(ctx: EvalContext, options: str) -> None:
    """Send the message on with the SRS0 form of its sender (chgfrom at end of message)."""
    if ctx.txn is None:
        return
    # reachable: the loader checks a control's setting only when the control text is static
    if not (ctx.setting("srs_secrets") or ()):
        raise ExpansionFailed("control = srs_forward needs settings.srs_secrets")
    domain = options.strip() or ctx.setting("srs_domain") or ctx.setting("primary_hostname")
    if not domain or any(c in domain for c in "@<>\r\n \t"):
        raise ExpansionFailed(f"control = srs_forward: bad forwarding domain {domain!r}")
    ctx.txn.controls["srs_forward"] = domain


@registry.control("srs_reverse", Stage.RCPT, requires_setting="srs_secrets")
def _srs_reverse(ctx: EvalContext, _options: str) -> None:
    """Deliver this recipient (an SRS0 bounce address) to `$srs_recipient` instead."""
    rcpt = ctx.rcpt
    if rcpt is None or ctx.txn is None or ctx.txn.edits is None:
        return
    original = rcpt.vars.get("srs_recipient")
    if not original:
        raise ExpansionFailed("control = srs_reverse without a true inbound_srs for this recipient")
    edits = ctx.txn.edits
    edits.delete_recipient(rcpt.raw, "srs_reverse")
    if not any(a.address.lower() == original.lower() for a in edits.rcpt_adds):
        edits.rcpt_adds.append(RecipientAdd(original, rcpt.params, "srs_reverse"))


def _forwarding(policy: object) -> bool:
    return bool(getattr(policy, "settings", {}).get("srs_secrets"))


@registry.eom_hook("srs_forward", phase="after_deliver", order=60, wanted=_forwarding)
def _rewrite_sender(ctx: EvalContext, _decision: object) -> None:
    """At end of message: the SRS0 sender for a message that `control = srs_forward` marked."""
    txn = ctx.txn
    if txn is None or txn.edits is None or not txn.sender:
        return
    domain = txn.controls.get("srs_forward")
    if not domain:
        return
    local, _, sender_domain = txn.sender.rpartition("@")
    if codec.is_srs(local) and sender_domain.lower() == domain.lower():
        return        # already our SRS0 address (a second pass through this host)
    txn.edits.sender = codec.encode(ctx.setting("srs_secrets")[0], txn.sender, domain, ctx.services.clock())
