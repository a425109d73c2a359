"""Variables from ESMTP parameters of MAIL and RCPT: SMTPUTF8 (RFC 6531) and DSN (RFC 3461).

- `$message_smtputf8`: "yes" when MAIL carried SMTPUTF8, else "no" (Exim's boolean form);
- `$dsn_ret`: MAIL RET= in upper case (FULL or HDRS), "" when absent;
- `$dsn_envid`: MAIL ENVID=, xtext-decoded (RFC 3461 §4), "" when absent;
- `$dsn_notify`: the current recipient's NOTIFY= in upper case (e.g. SUCCESS,FAILURE or
  NEVER), "" when absent or outside a recipient;
- `$dsn_orcpt`: the current recipient's ORCPT= with its address xtext-decoded
  (`rfc822;user@example.org`), "" when absent.

Exim 4.96 keeps these values internally under the same names but has no expansion variables
for them; the names follow its internal ones. A malformed xtext escape is kept as written
(the value is information, never a reason to fail). Control characters a decode would
produce are replaced by "?" so they cannot reach a header or a log line.
"""

from __future__ import annotations

import re

from .. import registry
from ..context import EvalContext
from ..expand.digests import to_bytes

_XTEXT = re.compile(rb"\+([0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def xtext_decode(text: str) -> str:
    """Decode RFC 3461 xtext (`+HH` -> that byte; the bytes are read as UTF-8, invalid ones
    as U+FFFD); control characters become "?"."""
    raw = _XTEXT.sub(lambda m: bytes([int(m.group(1), 16)]), to_bytes(text))
    return _CONTROL.sub("?", raw.decode("utf-8", "replace"))


def param(params: tuple[str, ...], keyword: str) -> str | None:
    """The value of `KEYWORD=value` among ESMTP parameters (case-insensitive keyword);
    "" for a bare `KEYWORD`; None when absent."""
    want = keyword.upper()
    for p in params:
        key, eq, value = p.partition("=")
        if key.strip().upper() == want:
            return value.strip() if eq else ""
    return None


def _mail(ctx: EvalContext, keyword: str) -> str | None:
    return None if ctx.txn is None else param(ctx.txn.sender_params, keyword)


def _rcpt(ctx: EvalContext, keyword: str) -> str | None:
    return None if ctx.rcpt is None else param(ctx.rcpt.params, keyword)


def _smtputf8(ctx: EvalContext) -> str:
    return "yes" if _mail(ctx, "SMTPUTF8") is not None else "no"


def _ret(ctx: EvalContext) -> str:
    return (_mail(ctx, "RET") or "").upper()


def _envid(ctx: EvalContext) -> str:
    return xtext_decode(_mail(ctx, "ENVID") or "")


def _notify(ctx: EvalContext) -> str:
    return (_rcpt(ctx, "NOTIFY") or "").upper()


def _orcpt(ctx: EvalContext) -> str:
    value = _rcpt(ctx, "ORCPT") or ""
    kind, semi, address = value.partition(";")
    return f"{kind};{xtext_decode(address)}" if semi else xtext_decode(value)


registry.add_variable("message_smtputf8", _smtputf8, "yes when MAIL FROM carried SMTPUTF8 (RFC 6531), else no")
registry.add_variable("dsn_ret", _ret, "MAIL RET= (FULL or HDRS), empty when not given")
registry.add_variable("dsn_envid", _envid, "MAIL ENVID=, xtext-decoded, empty when not given")
registry.add_variable("dsn_notify", _notify, "RCPT NOTIFY= of the current recipient (e.g. SUCCESS,FAILURE or NEVER)")
registry.add_variable("dsn_orcpt", _orcpt, "RCPT ORCPT= of the current recipient (rfc822;address, xtext-decoded)")
