"""Client identity per connection, derived once from the connect callback and MTA macros.

With a load balancer in front, Postfix (`smtpd_upstream_proxy_protocol = haproxy`) unwraps the
PROXY header and reports the original client in the connect callback and `{client_addr}`; a
proxied session's `{daemon_addr}`/`{daemon_port}` are the proxy's target address and port.
Which sessions are proxied is configuration: a listener named by `{daemon_name}` (Postfix
`-o milter_macro_daemon_name=...`) and/or `{daemon_port}` listed in `settings.proxy_listeners`.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping

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


def strip_ipv6_prefix(text: str) -> str:
    """Postfix reports IPv6 clients as `IPv6:2001:db8::1`; return the bare address."""
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    return text.strip().strip("[]")


@functools.lru_cache(maxsize=4096)
def _valid_ip(text: str) -> str:
    """The canonical form of an IP address, or "" (pure: cached, clients repeat)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def derive_identity(hostname: str, address: str, port: str | int | None, macros: Mapping[str, str],
                    listeners: tuple[ProxyListener, ...] = (), listen_port: str = "") -> ClientIdentity:
    """Build the ClientIdentity of a connection.

    The address is the connect callback's (the real client, after PROXY unwrapping) unless a
    `{client_addr}` macro is present; `IPv6:` prefixes and brackets are removed and only a
    syntactically valid IP is kept. A hostname of the form `[addr]` or `unknown` means the
    client has no verified name.
    """
    addr = _valid_ip(strip_ipv6_prefix(macros.get("{client_addr}", "") or address or ""))
    if not addr:
        addr = _valid_ip(strip_ipv6_prefix(address or ""))
    name = macros.get("{client_name}", hostname or "")
    if not name or name.startswith("[") or name == "unknown":
        name = ""
    ptr = macros.get("{client_ptr}", "")
    if ptr in ("unknown",) or ptr.startswith("["):
        ptr = ""
    daemon_name = macros.get("{daemon_name}", "")
    daemon_port = macros.get("{daemon_port}", "")
    ident = ClientIdentity(
        address=addr,
        port=str(macros.get("{client_port}", "") or (port if port not in (None, 0) else "")),
        name=name.rstrip(".").lower(),
        ptr=ptr.rstrip(".").lower(),
        local_address=_valid_ip(strip_ipv6_prefix(macros.get("{daemon_addr}", ""))),
        local_port=str(daemon_port),
        daemon_name=daemon_name,
    )
    for listener in listeners:
        if listener.matches(daemon_name, daemon_port, listen_port):
            ident.proxied = True
            ident.proxy_address = listener.proxy_address
            ident.proxy_port = listener.proxy_port
            break
    return ident


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
