"""PROXY settings, variables and enforcement: proxy_listeners, proxy_required_hosts, $proxy_*.

The session knows nothing of PROXY: at connect, a command hook marks a connection that came
through a proxy listener and checks proxy_required_hosts; a client that had to come through
a proxy and did not is refused (503) at every later command, as Exim does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .. import lazy, lists, registry
from ..actions import Reply
from ..context import EvalContext
from ..errors import SyntaxProblem
from ..outcome import Result
from ..stages import Stage

# The listener parsing and the state class are imported when a policy sets proxy_listeners or
# a connection is proxied: `aclmilter check` of a policy without PROXY never pays (lazy.py).
if TYPE_CHECKING:  # pragma: no cover
    from ..checks import proxy as px
    from ..checks.proxy import ProxyState
else:
    px = lazy.module("aclmilter.checks.proxy")

log = logging.getLogger("aclmilter")

PROXY_REFUSED = Reply(503, "5.7.0", ("Command refused, required Proxy negotiation failed",))
#: the connection's PROXY situation, found at connect
def _new_state() -> ProxyState:
    return px.ProxyState()


STATE = registry.slot("proxy", scope="connection", factory=_new_state)


def _proxied(ctx: EvalContext) -> ProxyState | None:
    """The state of a connection that came through a proxy listener, else None."""
    state = STATE.peek(ctx.conn)
    return state if state is not None and state.proxied else None


def _refused(ctx: EvalContext) -> bool:
    """True when the connection had to come through a proxy and did not."""
    state = STATE.peek(ctx.conn)
    return state is not None and state.required_failed


def _parse_required(value: Any) -> Any:
    """A host list (string or YAML sequence), parsed now, expanded per connection like Exim's."""
    if value is None or value == "":
        return None
    if isinstance(value, list):
        value = lists.join_items([str(v) for v in value])
    if not isinstance(value, str):
        raise SyntaxProblem("a host list is expected")
    return lists.parse_list(value, "host")


def _listeners(value: Any) -> Any:
    return px.parse_listeners(value)


registry.setting("proxy_listeners", _listeners, (),
                 "listeners whose sessions come through a PROXY-protocol load balancer")
registry.setting("proxy_required_hosts", _parse_required, None,
                 "clients that must come through a proxy listener; others get 503 for every command")

_VARS = {
    # Exim: yes when the host had to use the proxy protocol; here: it came through a proxy
    # listener, or it is in proxy_required_hosts and did not (failed negotiation).
    "proxy_session": lambda c: "yes" if (_proxied(c) or _refused(c)) else "no",
    "proxy_host_address": lambda c: s.address if (s := _proxied(c)) else "",
    "proxy_host_port": lambda c: s.port if (s := _proxied(c)) else "",
    "proxy_target_address": lambda c: c.conn.client.local_address if _proxied(c) else "",
    "proxy_target_port": lambda c: c.conn.client.local_port if _proxied(c) else "",
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
        return PROXY_REFUSED if _refused(ctx) else None
    settings = ctx.policy.settings
    client = ctx.conn.client
    state = STATE.on(ctx.conn)
    listener = px.listener_for(client, settings.get("proxy_listeners") or (), ctx.conn.listen_port)
    if listener is not None:
        state.proxied, state.address, state.port = True, listener.proxy_address, listener.proxy_port
    required = settings.get("proxy_required_hosts")
    if required is not None and not state.proxied and lists.match(ctx, required, None) is Result.OK:
        state.required_failed = True
        log.warning("connection from %s (port %s) is in proxy_required_hosts but did not come "
                    "through a proxy listener: refusing every command", client.address, client.local_port)
    return None


@registry.record_field("prx")
def _prx(conn: Any) -> str:
    """The PROXY peer in the message log line, as Exim's `PRX=` shows it: `[address]:port`,
    the address alone, `yes` when the proxy's address is not known (Postfix does not tell
    it to a milter); "" for a connection that did not come through a proxy."""
    state = STATE.peek(conn)
    if state is None or not state.proxied:
        return ""
    if not state.address:
        return "yes"
    return f"[{state.address}]:{state.port}" if state.port else state.address
