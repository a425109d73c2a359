"""Client identity per connection, derived once from the connect callback and MTA macros.

With a load balancer in front, Postfix (`smtpd_upstream_proxy_protocol = haproxy`) unwraps the
PROXY header and reports the original client in the connect callback and `{client_addr}`, so
the identity here is already the real client's; which sessions came through a proxy is the
proxy feature's business (checks/proxy.py).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Mapping

from .state import ClientIdentity


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


def derive_identity(hostname: str, address: str, port: str | int | None,
                    macros: Mapping[str, str]) -> ClientIdentity:
    """Build the ClientIdentity of a connection (a proxy listener is marked later, by the
    proxy feature's connect hook: checks/proxy.mark_proxied).

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
    return ident
