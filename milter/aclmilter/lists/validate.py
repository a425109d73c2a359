"""Load-time checks of static lists: named-list references, CIDRs, regexes, lookup types.

Lists that contain expansions are checked when they are expanded (a bad item then makes
the list DEFER with a log line), because their items are not known at load time.
"""

from __future__ import annotations

import re

from ..errors import SyntaxProblem
from ..expand.names import lookup_entry, unknown_lookup
from .hosts import BadAddress, looks_like_ip, parse_network
from .kinds import LOOKUP_ITEM
from . import mx
from .spec import ListSpec, split_text

_SWITCHES = {"host": {"ignore_unknown", "include_unknown", "ignore_defer", "include_defer"},
             "address": {"caseful"}, "localpart": {"caseful"}}
_NAME = re.compile(r"^[A-Za-z0-9_]+\Z")
#: hex groups joined by `::` or 3+ colon-separated hex groups: an IPv6 address written in a `:` list
_V6_IN_COLON_LIST = re.compile(r"(?<![\w.;])[0-9A-Fa-f]{1,4}(?:::[0-9A-Fa-f/]|(?::[0-9A-Fa-f]{1,4}){3,})")


def _offset(spec: ListSpec, raw: str, start: int) -> tuple[int, int]:
    """Offset of `raw` in the list text, searching from `start` (best effort)."""
    pos = spec.text.find(raw, start) if raw else -1
    return (pos if pos >= 0 else spec.body_offset), (pos + len(raw) if pos >= 0 else start)


def validate(spec: ListSpec, named: dict[str, set[str]], kind: str | None = None) -> list[SyntaxProblem]:
    """Return every problem found in a static list (an empty list when all is well)."""
    kind = kind or spec.kind
    problems: list[SyntaxProblem] = []
    if spec.static_items is None:
        return problems
    cursor = spec.body_offset
    if kind in ("host", "ip") and spec.sep == ":" and _V6_IN_COLON_LIST.search(spec.text):
        # Exim reads "2001:db8::/32" in a `:` list as the items "2001" and "db8:/32" too
        return [SyntaxProblem("an IPv6 address in a ':'-separated list is split at its colons: "
                              "start the list with '<; ' and separate its items with ';' "
                              "(e.g. \"<; 2001:db8::/32 ; 192.0.2.0/24\"), as Exim needs", spec.body_offset)]
    for raw in spec.static_items:
        at, cursor = _offset(spec, raw, cursor)
        item = raw
        while item.startswith("!"):
            item = item[1:].lstrip()
        message = _check_item(item, named, kind)
        if message:
            problems.append(SyntaxProblem(message, at))
    return problems


def _check_regex(pattern: str) -> str | None:
    try:
        re.compile(pattern, re.I)
    except re.error as exc:
        return f"bad regular expression {pattern!r}: {exc}"
    return None


def _check_item(item: str, named: dict[str, set[str]], kind: str) -> str | None:
    """Return a message for a bad item, or None."""
    if item.startswith("+"):
        name = item[1:]
        if name in _SWITCHES.get(kind, set()):
            return None
        if not _NAME.match(name):
            return f"bad named list reference {item!r}"
        table = "host" if kind == "ip" else kind
        if name not in named.get(table, set()):
            return f"unknown named {table} list +{name}"
        return None
    if item.startswith("/"):
        return None
    m = LOOKUP_ITEM.match(item)
    if m:
        net, type_name, data = m.group(1), m.group(2), m.group(3)
        entry = lookup_entry(type_name)
        if entry is None:
            return unknown_lookup(type_name)
        if net and kind != "host":
            return f"{net}- lookups are only for host lists"
        if not entry.query_style and not data.strip().startswith("/"):
            return f"the file of {type_name} must be an absolute path"
        return _check_partial(type_name, entry.query_style, kind)
    if item.startswith("^"):
        return _check_regex(item)
    if kind == "address":
        _, at, dom = item.rpartition("@")
        if at and dom.startswith("+"):
            return _check_item(dom, named, "domain")
        if at and dom.startswith("^"):
            return _check_regex(dom)
        if item.startswith("@@"):
            return _check_atat(item[2:])
        return None
    if kind in ("host", "ip") and looks_like_ip(item):
        try:
            parse_network(item)
        except BadAddress as exc:
            return str(exc)
        return None
    if kind == "domain" and item.startswith("@mx_"):
        try:
            _, ignore = mx.parse_item(item)
        except ValueError as exc:
            return str(exc)
        if ignore is not None:
            for ip in split_text(ignore):
                bad = _check_item(ip.lstrip("!").strip(), named, "ip")
                if bad:
                    return f"{item.partition('/')[0]}/ignore: {bad}"
        return None
    return None


def _check_partial(type_name: str, query_style: bool, kind: str) -> str | None:
    """partial- is for single-key lookups, and (as in Exim) not for address-list items."""
    if not type_name.startswith("partial"):
        return None
    if query_style:
        return f"{type_name}: partial matching applies only to single-key lookups"
    if kind == "address":
        return f"{type_name}: partial matching is not available for lookup items in address lists"
    return None


def _check_atat(spec: str) -> str | None:
    m = LOOKUP_ITEM.match(spec)
    if not m or m.group(1):
        return f"@@ must be followed by a lookup item (type;file or type;query), not {spec!r}"
    entry = lookup_entry(m.group(2))
    if entry is None:
        return f"unknown lookup type {m.group(2)!r}"
    if not entry.query_style and not m.group(3).strip().startswith("/"):
        return f"the file of {m.group(2)} must be an absolute path"
    return _check_partial(m.group(2), entry.query_style, "domain")
