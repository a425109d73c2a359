"""Our own host name (`primary_hostname`): the name reports, headers and `@` in lists use.

Order: `settings.primary_hostname` when the policy sets it; else the MTA's `j` macro (Postfix
sends `$myhostname`, Sendmail `$j`, both fully qualified); else `socket.getfqdn()`, asked
once per loaded policy through the `fqdn` service (tests override it; no module global).
The short name from `gethostname()` is never the default: DMARC failure reports from
`do-not-reply@vm` and `receiver=vm` in Received-SPF are useless to their readers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import lazy
from .services import register_factory

socket = lazy.module("socket")     # asked once per loaded policy, never by `aclmilter check`

if TYPE_CHECKING:
    from .context import EvalContext


def system_fqdn() -> str:
    """This host's fully qualified name as the resolver sees it (may lack a dot)."""
    return socket.getfqdn()


register_factory("fqdn", lambda settings, services: system_fqdn())


def configured_or_system(settings: dict[str, Any]) -> str:
    """The name used when no MTA macro is at hand (start-up warning, dry runs)."""
    return str(settings.get("primary_hostname") or system_fqdn())


def primary_hostname(ctx: "EvalContext") -> str:
    """The effective primary host name for this connection; never empty."""
    configured = ctx.policy.settings.get("primary_hostname")
    if configured:
        return str(configured)
    j = ctx.conn.macros.get("j")
    if j:
        return j
    return str(ctx.services.get("fqdn"))


def lacks_dot(name: str) -> bool:
    """True for a bare host name (`vm`): peers cannot resolve or reply to it."""
    return "." not in name.strip(".")
