"""File lookups for `${lookup}` and list items: lsearch, wildlsearch, nwildlsearch, iplsearch.

File format (Exim's): one entry per line, `key: value` or `key value`; the key ends at a
colon or whitespace unless it is in double quotes (needed for keys with colons or spaces,
such as IPv6 networks); lines starting with whitespace continue the previous value (joined
with one space); blank lines and lines starting with `#` are ignored. The first matching
entry wins. Keys compare caselessly. wildlsearch keys are not expanded here (safer, and
equal to nwildlsearch): `*suffix` is a tail match and `^regex` a caseless regex.
A file that cannot be read raises FileUnreadable naming the file (the statement ends in
ERROR, as Exim ends the session); files are cached until their modification time or size
changes (see lists.files). The `*` / `*@` default-key forms
(`lsearch*`, `lsearch*@`) are handled by expand.lookup for every single-key type.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import registry
from ..expand.regexes import MAX_SUBJECT
from ..lists.files import cached
from ..lists.hosts import client_ip

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext


@dataclass(frozen=True)
class Entry:
    key: str
    value: str


def _quoted_key(line: str) -> tuple[str, str]:
    """Read a "quoted" key (backslash escapes the next character); return (key, rest)."""
    out: list[str] = []
    i = 1
    while i < len(line) and line[i] != '"':
        if line[i] == "\\" and i + 1 < len(line):
            i += 1
        out.append(line[i])
        i += 1
    return "".join(out), line[i + 1:]


def parse_entries(text: str, key_ends_at_colon: bool = True) -> tuple[Entry, ...]:
    """Parse lookup file text into entries in file order."""
    entries: list[Entry] = []
    key: str | None = None
    parts: list[str] = []

    def flush() -> None:
        if key is not None:
            entries.append(Entry(key, " ".join(p for p in parts if p)))

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            flush()
            key, parts = None, []
            continue
        if line[0].isspace():
            if key is not None:
                parts.append(stripped)
            continue
        flush()
        if line.startswith('"'):
            key, rest = _quoted_key(line)
        else:
            m = re.match(r"[^\s:]+" if key_ends_at_colon else r"\S+", line)
            key = m.group(0) if m else ""
            rest = line[len(key):]
            if not key_ends_at_colon and key.endswith(":"):
                key = key[:-1]
        rest = rest.lstrip()
        if rest.startswith(":"):
            rest = rest[1:]
        parts = [rest.strip()]
    flush()
    return tuple(entries)


def _lsearch_index(text: str) -> dict[str, str]:
    index: dict[str, str] = {}
    for e in parse_entries(text):
        index.setdefault(e.key.lower(), e.value)
    return index


@registry.lookup("lsearch", query_style=False)
def lsearch(ctx: "EvalContext", key: str | None, path: str) -> str | None:
    """Literal, caseless key lookup in a `key: value` file."""
    return cached(path, "lsearch", _lsearch_index).get((key or "").lower())


@dataclass(frozen=True)
class _Wild:
    kind: str                    # "regex" | "suffix" | "literal"
    key: str
    value: str
    regex: re.Pattern[str] | None = None


def _wild_entries(text: str) -> tuple[_Wild, ...]:
    out: list[_Wild] = []
    for e in parse_entries(text):
        if e.key.startswith("^"):
            try:
                out.append(_Wild("regex", e.key, e.value, re.compile(e.key, re.I)))
            except re.error:
                continue         # a bad pattern never matches (it cannot be reported per message)
        elif e.key.startswith("*"):
            out.append(_Wild("suffix", e.key[1:].lower(), e.value))
        else:
            out.append(_Wild("literal", e.key.lower(), e.value))
    return tuple(out)


def _wild_find(path: str, key: str | None) -> str | None:
    subject = (key or "").lower()
    for w in cached(path, "wildlsearch", _wild_entries):
        if w.kind == "literal" and subject == w.key:
            return w.value
        if w.kind == "suffix" and subject.endswith(w.key):
            return w.value
        if w.kind == "regex" and w.regex is not None and w.regex.search(subject[:MAX_SUBJECT]):
            return w.value
    return None


@registry.lookup("wildlsearch", query_style=False)
def wildlsearch(ctx: "EvalContext", key: str | None, path: str) -> str | None:
    """Like lsearch, but keys may be `*suffix` or `^regex` (keys are not expanded)."""
    return _wild_find(path, key)


@registry.lookup("nwildlsearch", query_style=False)
def nwildlsearch(ctx: "EvalContext", key: str | None, path: str) -> str | None:
    """Like wildlsearch (keys are never expanded)."""
    return _wild_find(path, key)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip_entries(text: str) -> tuple[tuple[Network, str], ...]:
    out: list[tuple[Network, str]] = []
    for e in parse_entries(text, key_ends_at_colon=False):
        key = e.key
        try:
            net = ipaddress.ip_network(key, strict=False)
        except ValueError:
            continue             # not an address: ignored, as it can never match an IP key
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None \
                and net.prefixlen >= 96:
            net = ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}")
        out.append((net, e.value))
    return tuple(out)


def _key_network(key: str) -> Network | None:
    addr, sep, bits = key.strip().partition("/")
    ip = client_ip(addr)
    if ip is None:
        return None
    try:
        return ipaddress.ip_network(f"{ip}/{bits}" if sep else str(ip), strict=False)
    except ValueError:
        return None


@registry.lookup("iplsearch", query_style=False)
def iplsearch(ctx: "EvalContext", key: str | None, path: str) -> str | None:
    """Keys in the file are IP addresses or CIDR networks (IPv6 ones written `"2001:db8::/32"`
    or followed by whitespace); the lookup key is an IP (or network) inside one of them."""
    want = _key_network(key or "")
    if want is None:
        return None
    for net, value in cached(path, "iplsearch", _ip_entries):
        if net.version == want.version and want.subnet_of(net):
            return value
    return None
