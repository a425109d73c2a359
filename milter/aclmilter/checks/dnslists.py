"""DNS black/white lists (Exim's `dnslists`): the list syntax, the names to look up, and
how returned addresses are matched. Pure: the DNS is reached through a function passed in.

Syntax of one item (items are separated like any Exim list, `<;` changes the separator):

    [+include_unknown | +exclude_unknown | +defer_unknown]     (applies to later items)
    [txtzone,]zone[!](=|==|&|=&)ip,ip...[/key[:key...]]

- without `/key` the key is the client's IP address;
- a key that is an IP address is reversed (IPv6 nibble by nibble), a name is not;
- `=`: some returned address equals a listed one; `==`: every returned address does;
  `&` and `=&`: the same with the listed addresses as bit masks (all mask bits present);
  `!` inverts the test;
- with two zones the second is asked first (with the restriction); on a match the first is
  asked without it and gives `$dnslist_domain`, `$dnslist_value` and `$dnslist_text`;
- returned addresses outside 127.0.0.0/8 are ignored (a list that lost control of its zone);
- a lookup that cannot be answered now is, by default, "not listed" (`+exclude_unknown`),
  "listed" after `+include_unknown`, and DEFER after `+defer_unknown`.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Callable

from ..errors import LookupDefer, SyntaxProblem
from ..lists.hosts import parse_ip
from ..lists.spec import split_text

_LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")


class Unknown(enum.Enum):
    """What a lookup that cannot be answered now counts as."""

    EXCLUDE = "exclude_unknown"     # not listed (Exim's default)
    INCLUDE = "include_unknown"     # listed
    DEFER = "defer_unknown"         # the condition defers


@dataclass(frozen=True)
class Restriction:
    """The `=ip,ip` / `&mask,mask` part of an item."""

    addresses: tuple[int, ...]      # IPv4 addresses as integers
    bitmask: bool = False           # `&`: the addresses are masks
    every: bool = False             # `==` / `=&`: every returned address must match
    negated: bool = False           # `!`

    def _one(self, value: int) -> bool:
        if self.bitmask:
            return any(value & mask == mask for mask in self.addresses)
        return value in self.addresses

    def holds(self, returned: tuple[str, ...]) -> bool:
        """True when the returned addresses satisfy the restriction (see the module doc)."""
        values = [int(ipaddress.IPv4Address(a)) for a in returned]
        result = all(map(self._one, values)) if self.every else any(map(self._one, values))
        return result != self.negated


@dataclass(frozen=True)
class Item:
    """One DNS list of a `dnslists` condition."""

    zone: str                           # asked with the restriction
    txt_zone: str                       # named in $dnslist_domain (== zone unless two were given)
    restriction: Restriction | None
    keys: tuple[str, ...] | None        # None: the client's IP address
    unknown: Unknown


def reversed_key(key: str) -> str:
    """The label sequence looked up for `key`: an IP address reversed (IPv6 nibbles, an
    IPv4-mapped one as IPv4), a name as is."""
    ip = parse_ip(key)
    if ip is None:
        return key.strip(".").lower()
    return ip.reverse_pointer.rsplit(".", 2)[0]


def _zone(text: str, where: str) -> str:
    zone = text.strip().strip(".").lower()
    if not zone or any(c.isspace() for c in zone) or ".." in zone:
        raise SyntaxProblem(f"dnslists: bad DNS list domain {text!r} in {where!r}")
    return zone


def _restriction(op: str, text: str, where: str) -> Restriction:
    addresses = []
    for part in text.split(","):
        try:
            addresses.append(int(ipaddress.IPv4Address(part.strip())))
        except ValueError:
            raise SyntaxProblem(f"dnslists: {part.strip()!r} is not an IPv4 address in {where!r}") from None
    negated = op.startswith("!")
    op = op.lstrip("!")
    return Restriction(tuple(addresses), bitmask=op.endswith("&"), every=len(op) == 2, negated=negated)


def _item(text: str, unknown: Unknown) -> Item:
    zones, slash, key_text = text.partition("/")
    keys = None
    if slash:
        keys = tuple(k for k in split_text(key_text) if k)
    restriction = None
    cut = next((i for i, c in enumerate(zones) if c in "!=&"), -1)
    if cut >= 0:
        rest = zones[cut:]
        op_len = 0
        while op_len < len(rest) and rest[op_len] in "!=&" and op_len < 3:
            op_len += 1
        op = rest[:op_len]
        if op not in ("=", "==", "&", "=&", "!=", "!==", "!&", "!=&"):
            raise SyntaxProblem(f"dnslists: unknown match operator {op!r} in {text!r}")
        restriction = _restriction(op, rest[op_len:], text)
        zones = zones[:cut]
    txt_zone, comma, zone = zones.partition(",")
    txt_zone = _zone(txt_zone, text)
    zone = _zone(zone, text) if comma else txt_zone
    return Item(zone, txt_zone, restriction, keys, unknown)


def parse(text: str) -> tuple[Item, ...]:
    """Parse (expanded) `dnslists` text; raises SyntaxProblem for a malformed item."""
    unknown = Unknown.EXCLUDE
    out: list[Item] = []
    for raw in split_text(text):
        if not raw:
            continue
        if raw.startswith("+"):
            try:
                unknown = Unknown(raw[1:])
            except ValueError:
                raise SyntaxProblem(f"dnslists: unknown option {raw!r} (+include_unknown, "
                                    "+exclude_unknown or +defer_unknown)") from None
            continue
        out.append(_item(raw, unknown))
    return tuple(out)


# ---- evaluation ------------------------------------------------------------------------------
#: (name, rdtype) -> the records' texts ([] for none); raises LookupDefer when it cannot answer now
Resolve = Callable[[str, str], tuple[str, ...]]


@dataclass(frozen=True)
class Listed:
    """A match: what `$dnslist_domain`, `$dnslist_matched`, `$dnslist_value` and `$dnslist_text` show."""

    domain: str
    matched: str
    value: str
    text: str


class Outcome(enum.Enum):
    NOT_LISTED = "not listed"
    DEFER = "defer"


def _addresses(resolve: Resolve, name: str) -> tuple[str, ...]:
    """The A records of `name` inside 127.0.0.0/8 (others are ignored)."""
    return tuple(a for a in resolve(name, "A")
                 if (ip := parse_ip(a)) is not None and ip in _LOOPBACK_NET)


def _txt(resolve: Resolve, name: str) -> str:
    try:
        texts = resolve(name, "TXT")
    except LookupDefer:
        return ""
    return texts[0] if texts else ""


def _one(resolve: Resolve, item: Item, key: str) -> Listed | None:
    """Look `key` up in one item; raises LookupDefer when the DNS cannot answer now."""
    label = reversed_key(key)
    found = _addresses(resolve, f"{label}.{item.zone}")
    if not found or (item.restriction is not None and not item.restriction.holds(found)):
        return None
    if item.txt_zone != item.zone:
        name = f"{label}.{item.txt_zone}"
        found = _addresses(resolve, name)
        if not found:
            return None
    else:
        name = f"{label}.{item.zone}"
    return Listed(item.txt_zone, key, ", ".join(found), _txt(resolve, name))


def _keys(item: Item, client_ip: str) -> tuple[str, ...]:
    return item.keys if item.keys is not None else ((client_ip,) if client_ip else ())


def first_names(items: tuple[Item, ...], client_ip: str) -> list[str]:
    """The names `evaluate` asks first (the A record of each key in each list), in its order,
    each once: what can be asked together before the walk (issue 23)."""
    names: dict[str, None] = {}
    for item in items:
        for key in _keys(item, client_ip):
            names[f"{reversed_key(key)}.{item.zone}".lower()] = None
    return list(names)


def evaluate(items: tuple[Item, ...], client_ip: str, resolve: Resolve) -> Listed | Outcome:
    """Walk the items in order; the first listed key wins.

    Returns a Listed, Outcome.NOT_LISTED, or Outcome.DEFER (a lookup of a `+defer_unknown`
    item failed and no other key of that item matched)."""
    for item in items:
        failed = False
        for key in _keys(item, client_ip):
            try:
                hit = _one(resolve, item, key)
            except LookupDefer:
                if item.unknown is Unknown.INCLUDE:
                    return Listed(item.txt_zone, key, "", "")
                failed = True
                continue
            if hit is not None:
                return hit
        if failed and item.unknown is Unknown.DEFER:
            return Outcome.DEFER
    return Outcome.NOT_LISTED
