"""PROXY settings and variables: proxy_listeners, proxy_required_hosts, $proxy_*."""

from __future__ import annotations

from typing import Any

from .. import lists, registry
from ..checks.proxy import parse_listeners
from ..errors import SyntaxProblem


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
    "proxy_session": lambda c: "yes" if (c.conn.client.proxied or c.conn.client.proxy_required_failed) else "no",
    "proxy_host_address": lambda c: c.conn.client.proxy_address if c.conn.client.proxied else "",
    "proxy_host_port": lambda c: c.conn.client.proxy_port if c.conn.client.proxied else "",
    "proxy_target_address": lambda c: c.conn.client.local_address if c.conn.client.proxied else "",
    "proxy_target_port": lambda c: c.conn.client.local_port if c.conn.client.proxied else "",
}
for _n, _f in _VARS.items():
    registry.add_variable(_n, _f)
