"""Domain-list items `@mx_any`, `@mx_primary`, `@mx_secondary` (optionally `/ignore=<ip list>`).

The domain's MX records are looked up through the DNS service; an MX target is "the local
host" when one of its addresses is a local interface (`settings.local_interfaces`, or, when
that is not set, the address the client connected to, `$received_ip_address`) and is not in
the ignore list, or when its name is in `settings.hosts_treat_as_local` (a domain list).

- `@mx_any`: some MX target is the local host;
- `@mx_primary`: a target with the lowest preference is the local host;
- `@mx_secondary`: some target is the local host, but none with the lowest preference.

Outcomes: MATCH / NOMATCH (also for a domain without MX records, or a null MX); DEFER when
the MX lookup or an address lookup of a target fails temporarily, as in Exim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import LookupDefer
from ..outcome import Result
from .hosts import client_ip
from .kinds import Outcome

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

KINDS = ("@mx_any", "@mx_primary", "@mx_secondary")


def parse_item(item: str) -> tuple[str, str | None]:
    """(`@mx_...`, ignore-list text or None); raises ValueError on an unknown form."""
    kind, slash, option = item.partition("/")
    if kind not in KINDS:
        raise ValueError(f"unknown item {kind!r} (known: {', '.join(KINDS)})")
    if not slash:
        return kind, None
    if not option.startswith("ignore="):
        raise ValueError(f"{kind}: the only option is /ignore=<ip list>")
    return kind, option[len("ignore="):]


def _is_local_address(ctx: "EvalContext", text: str, ignore: str | None) -> bool:
    ip = client_ip(text)
    if ip is None:
        return False
    if ignore is not None and _matching.match_text(ctx, ignore, str(ip), "ip") is Result.OK:
        return False
    configured = ctx.setting("local_interfaces")       # networks, parsed at policy load
    if configured:
        return any(ip.version == net.version and ip in net for net in configured)
    return ip == client_ip(ctx.conn.client.local_address or "")


def _is_local_host(ctx: "EvalContext", dns: object, name: str, ignore: str | None) -> bool:
    """True when MX target `name` is the local host (raises LookupDefer on a DNS failure)."""
    treat = ctx.setting("hosts_treat_as_local")
    if treat and _matching.match_text(ctx, treat, name.lower(), "domain") is Result.OK:
        return True
    for rdtype in ("A", "AAAA"):
        for text in dns.lookup(name, rdtype) or ():     # type: ignore[attr-defined]
            if _is_local_address(ctx, str(text), ignore):
                return True
    return False


def mx_item(ctx: "EvalContext", item: str, domain: str) -> Outcome:
    """Match one `@mx_*` item against `domain` (see module docstring)."""
    try:
        kind, ignore = parse_item(item)
    except ValueError as exc:
        ctx.log_lines.append(f"domain list: {exc}")
        return Outcome.DEFER
    if not domain or domain.startswith("["):
        return Outcome.NOMATCH
    try:
        dns = ctx.services.get("dns")
    except KeyError:
        ctx.log_lines.append(f"domain list: no DNS service for {kind}")
        return Outcome.DEFER
    try:
        records: list[tuple[int, str]] = []
        for text in dns.lookup(domain, "MX") or ():
            pref, _, target = str(text).partition(" ")
            target = target.strip().rstrip(".")
            if target and pref.isdigit():           # a null MX (".") has no target
                records.append((int(pref), target))
        if not records:
            return Outcome.NOMATCH
        lowest = min(p for p, _ in records)
        local = {p for p, name in records if _is_local_host(ctx, dns, name, ignore)}
    except LookupDefer as exc:
        ctx.log_lines.append(f"domain list: {kind} for {domain!r} deferred: {exc}")
        return Outcome.DEFER
    matched = {"@mx_any": bool(local), "@mx_primary": lowest in local,
               "@mx_secondary": bool(local) and lowest not in local}[kind]
    return Outcome.MATCH if matched else Outcome.NOMATCH


# Imported last (matching imports kinds, which imports this module).
from . import matching as _matching  # noqa: E402
