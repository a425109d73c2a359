"""Host-list items: `*`, empty, IP/CIDR, names (forward DNS), `*.suffix`/`^regex` on the
verified client name, `@`, `@[]`, and lookups (`net-`, `netN-`, `iplsearch`, by name).

The client's IPv4-mapped IPv6 address is compared as IPv4. A malformed address item, a name
that does not resolve, or a missing client name is UNKNOWN; a DNS temporary error is DEFER.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from ..errors import LookupDefer
from .kinds import LOOKUP_ITEM, Flags, Outcome, run_lookup, string_like
from ..expand.names import lookup_entry
from ..hostname import primary_hostname

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_LOOKS_IP = re.compile(r"^(?:[0-9.]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)(?:/.*)?\Z")


class BadAddress(ValueError):
    """An item that looks like an IP address or network but is not one."""


def parse_ip(text: str) -> IPAddress | None:
    """The address `text` is exactly (no prefix, no white space), an IPv4-mapped IPv6 address
    reduced to IPv4; None if it is not an address."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_ip(text: str) -> IPAddress | None:
    """Parse an address ("IPv6:" prefix and surrounding white space allowed), reducing
    IPv4-mapped IPv6 to IPv4."""
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    return parse_ip(text.strip())


def looks_like_ip(item: str) -> bool:
    """True for items that must be an address or CIDR (digits and dots, or containing ':')."""
    return bool(_LOOKS_IP.match(item)) and any(c.isdigit() for c in item) or item.count(":") >= 2


def parse_network(item: str) -> IPNetwork:
    """Parse an address or CIDR item (host bits allowed); raise BadAddress if malformed."""
    addr, sep, bits = item.partition("/")
    if sep and not bits.isdigit():
        raise BadAddress(f"bad prefix length in {item!r}")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise BadAddress(f"{item!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv4Address) and addr.count(".") != 3:
        raise BadAddress(f"{item!r} is not a full IPv4 address")
    try:
        net = ipaddress.ip_network(f"{addr}/{bits}" if sep else addr, strict=False)
    except ValueError:
        raise BadAddress(f"bad prefix length in {item!r}") from None
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None \
            and net.prefixlen >= 96:
        net = ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}")
    return net


def _masked_key(ip: IPAddress, bits: int | None, type_name: str) -> str:
    """Key for `net-` / `netN-` lookups (Exim: IPv6 keys use dots unless iplsearch)."""
    if bits is None:
        text = str(ip)
    else:
        bits = min(bits, ip.max_prefixlen)
        net = ipaddress.ip_network(f"{ip}/{bits}", strict=False)
        text = f"{net.network_address if net.version == 4 else net.network_address.exploded}/{bits}"
    if ip.version == 6 and not type_name.startswith("iplsearch"):
        text = text.replace(":", ".")
    return text


def _resolve_matches(ctx: "EvalContext", name: str, ip: IPAddress) -> Outcome:
    """Forward-resolve `name` and compare with the client IP."""
    try:
        dns = ctx.services.get("dns")
    except KeyError:
        ctx.log_lines.append(f"host list: no DNS service to look up {name!r}")
        return Outcome.DEFER
    found = False
    for rdtype in ("A", "AAAA"):
        try:
            answers = dns.lookup(name, rdtype)
        except LookupDefer as exc:
            ctx.log_lines.append(f"host list: DNS lookup of {name!r} deferred: {exc}")
            return Outcome.DEFER
        for text in answers or ():
            found = True
            if client_ip(str(text)) == ip:
                return Outcome.MATCH
    return Outcome.NOMATCH if found else Outcome.UNKNOWN


def host_item(ctx: "EvalContext", item: str, subject: str, flags: Flags, names_allowed: bool) -> Outcome:
    """Match one host-list item against the client (`subject` = its IP, "" = none)."""
    if item == "*":
        return Outcome.MATCH
    if item == "":
        return Outcome.MATCH if subject == "" else Outcome.NOMATCH
    ip = client_ip(subject) if subject else None
    m = LOOKUP_ITEM.match(item)
    if m:
        net, type_name, data = m.group(1), m.group(2), m.group(3)
        if net or type_name.startswith("iplsearch"):
            if ip is None:
                return Outcome.NOMATCH
            bits = int(net[3:]) if net and len(net) > 3 else None
            return run_lookup(ctx, "host", type_name, _masked_key(ip, bits, type_name), data)
        if not names_allowed:
            return Outcome.NOMATCH
        entry = lookup_entry(type_name)
        if entry is not None and entry.query_style:
            return run_lookup(ctx, "host", type_name, None, data)
        name = ctx.conn.client.name
        if not name:
            return Outcome.UNKNOWN
        return run_lookup(ctx, "host", type_name, name.lower(), data)
    if looks_like_ip(item):
        try:
            network = parse_network(item)
        except BadAddress as exc:
            ctx.log_lines.append(f"host list: {exc}")
            return Outcome.UNKNOWN
        return Outcome.MATCH if ip is not None and ip.version == network.version and ip in network \
            else Outcome.NOMATCH
    if item == "@[]":
        local = client_ip(ctx.conn.client.local_address or "")
        return Outcome.MATCH if ip is not None and ip == local else Outcome.NOMATCH
    if not names_allowed:
        return Outcome.NOMATCH
    if item.startswith("*") or item.startswith("^"):
        name = ctx.conn.client.name
        if not name:
            return Outcome.UNKNOWN
        return string_like(ctx, item, name.lower(), True, "host")
    if ip is None:
        return Outcome.NOMATCH
    if item == "@":
        primary = primary_hostname(ctx)
        if not primary:
            return Outcome.NOMATCH
        item = str(primary)
    return _resolve_matches(ctx, item, ip)
