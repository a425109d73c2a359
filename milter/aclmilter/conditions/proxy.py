"""PROXY settings, variables and enforcement: proxy_listeners, proxy_required_hosts, $proxy_*.

The session knows nothing of PROXY: at connect, a command hook marks a connection that came
through a proxy listener and checks proxy_required_hosts; a client that had to come through
a proxy and did not is refused (503) at every later command, as Exim does.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import lists, registry
from ..actions import Reply
from ..checks.proxy import mark_proxied, parse_listeners
from ..context import EvalContext
from ..errors import SyntaxProblem
from ..outcome import Result
from ..stages import Stage

log = logging.getLogger("aclmilter")

PROXY_REFUSED = Reply(503, "5.7.0", ("Command refused, required Proxy negotiation failed",))
#: True once a connection in proxy_required_hosts was found not to come through a proxy
_FAILED = registry.slot("proxy_required_failed", scope="connection", factory=bool)


def _parse_required(value: Any) -> Any:
    """A host list (string or YAML sequence), parsed now, expanded per connection like Exim's."""
    if value is None or value == "":
        return None
    if isinstance(value, list):
        value = lists.join_items([str(v) for v in value])
    if not isinstance(value, str):
        raise SyntaxProblem("a host list is expected")
    return lists.parse_list(value, "host")


registry.setting("proxy_listeners", parse_listeners, (),
                 "listeners whose sessions come through a PROXY-protocol load balancer")
registry.setting("proxy_required_hosts", _parse_required, None,
                 "clients that must come through a proxy listener; others get 503 for every command")

_VARS = {
    # Exim: yes when the host had to use the proxy protocol; here: it came through a proxy
    # listener, or it is in proxy_required_hosts and did not (failed negotiation).
    "proxy_session": lambda c: "yes" if (c.conn.client.proxied or _FAILED.peek(c.conn)) else "no",
    "proxy_host_address": lambda c: c.conn.client.proxy_address if c.conn.client.proxied else "",
    "proxy_host_port": lambda c: c.conn.client.proxy_port if c.conn.client.proxied else "",
    "proxy_target_address": lambda c: c.conn.client.local_address if c.conn.client.proxied else "",
    "proxy_target_port": lambda c: c.conn.client.local_port if c.conn.client.proxied else "",
}
for _n, _f in _VARS.items():
    registry.add_variable(_n, _f)


def _wanted(policy: Any) -> bool:
    settings = policy.settings
    return bool(settings.get("proxy_listeners")) or settings.get("proxy_required_hosts") is not None


@registry.command_hook("proxy_required_hosts", commands=registry.COMMANDS, order=10, wanted=_wanted)
def _enforce(ctx: EvalContext) -> Reply | None:
    """At connect: mark a proxied connection, and check proxy_required_hosts (never refused
    there: a refusal at connect makes Postfix send a 554 banner and still answer EHLO with
    250, whereas Exim answers every command but QUIT with 503). At every later command: the
    503 refusal when the required proxy negotiation failed."""
    if ctx.stage is not Stage.CONNECT:
        return PROXY_REFUSED if _FAILED.peek(ctx.conn) else None
    settings = ctx.policy.settings
    client = ctx.conn.client
    mark_proxied(client, settings.get("proxy_listeners") or (), ctx.conn.listen_port)
    required = settings.get("proxy_required_hosts")
    if required is not None and not client.proxied and lists.match(ctx, required, None) is Result.OK:
        _FAILED.put(ctx.conn, True)
        log.warning("connection from %s (port %s) is in proxy_required_hosts but did not come "
                    "through a proxy listener: refusing every command", client.address, client.local_port)
    return None
