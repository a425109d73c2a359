"""PROXY listeners: which connections came through a PROXY-protocol load balancer.

With a load balancer in front, Postfix (`smtpd_upstream_proxy_protocol = haproxy`) unwraps the
PROXY header and reports the original client in the connect callback and `{client_addr}`; a
proxied session's `{daemon_addr}`/`{daemon_port}` are the proxy's target address and port.
Which sessions are proxied is configuration: a listener named by `{daemon_name}` (Postfix
`-o milter_macro_daemon_name=...`) and/or `{daemon_port}` listed in `settings.proxy_listeners`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..identity import _valid_ip
from ..state import ClientIdentity


@dataclass(frozen=True)
class ProxyListener:
    """One PROXY listener as the policy describes it."""

    daemon_name: str | None = None
    daemon_port: str | None = None
    proxy_address: str = ""      # the proxy's own address, when the administrator knows it
    proxy_port: str = ""

    def matches(self, daemon_name: str, daemon_port: str, listen_port: str) -> bool:
        """True when the session came in through this listener (every given key must match)."""
        if self.daemon_name is None and self.daemon_port is None:
            return False
        if self.daemon_name is not None and self.daemon_name != daemon_name:
            return False
        if self.daemon_port is not None and self.daemon_port not in (daemon_port, listen_port):
            return False
        return True


@dataclass
class ProxyState:
    """What one connection's PROXY situation is (a connection slot of conditions/proxy.py)."""

    proxied: bool = False        # it came in through a proxy listener
    address: str = ""            # the proxy's own address, when the listener names it
    port: str = ""
    required_failed: bool = False    # in proxy_required_hosts, but not through a proxy listener


def listener_for(ident: ClientIdentity, listeners: tuple[ProxyListener, ...],
                 listen_port: str) -> ProxyListener | None:
    """The proxy listener the connection came in through (by its `{daemon_name}`,
    `{daemon_port}` or our listener's port), or None."""
    for listener in listeners:
        if listener.matches(ident.daemon_name, ident.local_port, listen_port):
            return listener
    return None


def parse_listeners(value: Any) -> tuple[ProxyListener, ...]:
    """Validate `settings.proxy_listeners` (a list of mappings with closed keys)."""
    from ..errors import SyntaxProblem
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SyntaxProblem("a list of {daemon_name, daemon_port, proxy_address, proxy_port} is expected")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise SyntaxProblem("each proxy listener is a mapping")
        unknown = set(item) - {"daemon_name", "daemon_port", "proxy_address", "proxy_port"}
        if unknown:
            raise SyntaxProblem(f"unknown proxy listener key(s): {', '.join(sorted(unknown))}")
        if "daemon_name" not in item and "daemon_port" not in item:
            raise SyntaxProblem("a proxy listener needs daemon_name and/or daemon_port")
        paddr = str(item.get("proxy_address", "") or "")
        if paddr and not _valid_ip(paddr):
            raise SyntaxProblem(f"proxy_address {paddr!r} is not an IP address")
        out.append(ProxyListener(
            str(item["daemon_name"]) if "daemon_name" in item else None,
            str(item["daemon_port"]) if "daemon_port" in item else None,
            paddr, str(item.get("proxy_port", "") or "")))
    return tuple(out)
