"""Single-item matchers per list kind: domain, local part, address and plain strings.

Each matcher gets one item (without `!`) and the subject and says MATCH, NOMATCH, UNKNOWN
(cannot be decided, e.g. no host name) or DEFER (a lookup could not answer now). A lookup
match stores its value in ctx.locals (`domain_data`, `local_part_data`, `host_data`, and
always `list_data`) for the caller to publish.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import ExpansionFailed, LookupDefer
from ..outcome import Result
from ..expand import lookup as lookup_mod
from ..expand.names import lookup_entry
from ..expand.regexes import search
from ..hostname import primary_hostname

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext


class Outcome(enum.Enum):
    MATCH = "match"
    NOMATCH = "nomatch"
    UNKNOWN = "unknown"
    DEFER = "defer"


@dataclass
class Flags:
    """Switch items seen so far in this list (`+caseful`, `+ignore_unknown`, ...)."""

    caseful: bool = False
    ignore_unknown: bool = False
    include_unknown: bool = False
    ignore_defer: bool = False
    include_defer: bool = False


#: `type;data`, optionally `netN-type;data` (host lists) or `partialN-type` / `partialN(prefix)type`.
LOOKUP_ITEM = re.compile(r"^(?:(net\d*)-)?((?:partial\d*(?:-|\([^)]*\)))?[A-Za-z0-9_]+(?:\*@|\*)?);(.*)$", re.S)
DATA_VARIABLE = {"host": "host_data", "ip": "host_data", "domain": "domain_data",
                 "localpart": "local_part_data", "address": "list_data", "string": "list_data"}

Matcher = Callable[["EvalContext", str, str, Flags], Outcome]


def set_data(ctx: "EvalContext", kind: str, value: str) -> None:
    ctx.locals[DATA_VARIABLE[kind]] = value
    ctx.locals["list_data"] = value


def run_lookup(ctx: "EvalContext", kind: str, type_name: str, key: str | None, data: str) -> Outcome:
    """Run a lookup item; found -> MATCH (value stored), not found -> NOMATCH."""
    entry = lookup_entry(type_name)
    if entry is None:
        ctx.log_lines.append(f"{kind} list: unknown lookup type {type_name!r}")
        return Outcome.DEFER
    try:
        if entry.query_style:
            value = lookup_mod.find(ctx, type_name, None, data)
        else:
            if key is None or key == "":
                return Outcome.NOMATCH
            value = lookup_mod.find(ctx, type_name, key, data.strip())
    except LookupDefer as exc:
        ctx.log_lines.append(f"{kind} list: {exc}")
        return Outcome.DEFER
    except ExpansionFailed as exc:
        ctx.log_lines.append(f"{kind} list: {exc}")
        return Outcome.DEFER
    if value is None:
        return Outcome.NOMATCH
    set_data(ctx, kind, value)
    return Outcome.MATCH


def _regex(ctx: "EvalContext", pattern: str, subject: str, caseless: bool) -> Outcome:
    try:
        m = search(None, pattern, subject, re.I if caseless else 0)
    except ExpansionFailed as exc:
        ctx.log_lines.append(f"list regex {pattern[:60]!r}: {exc}")
        return Outcome.DEFER
    return Outcome.MATCH if m else Outcome.NOMATCH


def _fold(s: str, caseless: bool) -> str:
    return s.lower() if caseless else s


def string_like(ctx: "EvalContext", item: str, subject: str, caseless: bool, kind: str) -> Outcome:
    """The common item forms: `^regex`, `*suffix`, `type;data` lookups, and literals."""
    if item.startswith("^"):
        return _regex(ctx, item, subject, caseless)
    m = LOOKUP_ITEM.match(item)
    if m and not m.group(1):
        return run_lookup(ctx, kind, m.group(2), subject, m.group(3))
    if item.startswith("*"):
        return Outcome.MATCH if _fold(subject, caseless).endswith(_fold(item[1:], caseless)) else Outcome.NOMATCH
    return Outcome.MATCH if _fold(subject, caseless) == _fold(item, caseless) else Outcome.NOMATCH


def domain_item(ctx: "EvalContext", item: str, subject: str, flags: Flags) -> Outcome:
    """Domain lists: `@` is the primary host name, `@[]` a literal of the local address."""
    if item == "@":
        primary = primary_hostname(ctx)
        return Outcome.MATCH if primary and subject.lower() == str(primary).lower() else Outcome.NOMATCH
    if item == "@[]":
        local = ctx.conn.client.local_address
        return Outcome.MATCH if local and subject.lower() in (f"[{local}]", f"[ipv6:{local}]".lower()) \
            else Outcome.NOMATCH
    if item.startswith("@mx_"):
        return _mx.mx_item(ctx, item, subject.lower())
    return string_like(ctx, item, subject, True, "domain")


def localpart_item(ctx: "EvalContext", item: str, subject: str, flags: Flags) -> Outcome:
    """Local-part lists: caseless unless `+caseful` came earlier."""
    return string_like(ctx, item, subject, not flags.caseful, "localpart")


def string_item(ctx: "EvalContext", item: str, subject: str, flags: Flags) -> Outcome:
    """Plain string lists (authenticated, encrypted): case-sensitive."""
    return string_like(ctx, item, subject, False, "string")


def address_item(ctx: "EvalContext", item: str, subject: str, flags: Flags) -> Outcome:
    """Address lists: regex, whole-address lookups, `lp@domain-item`, bare domain items."""
    lp, at, dom = subject.rpartition("@")
    if not at:
        lp, dom = subject, ""
    dom = dom.lower()
    address = f"{lp if flags.caseful else lp.lower()}{at}{dom}"
    caseless = not flags.caseful
    if item == "":
        return Outcome.MATCH if subject == "" else Outcome.NOMATCH
    if item.startswith("@@"):
        return _atat.atat_item(ctx, item[2:], lp, dom, flags) if subject else Outcome.NOMATCH
    if item.startswith("^"):
        return _regex(ctx, item, address, caseless)
    m = LOOKUP_ITEM.match(item)
    if m and not m.group(1):
        return run_lookup(ctx, "address", m.group(2), address or None, m.group(3))
    if subject == "":
        return Outcome.NOMATCH
    lp_pat, at2, dom_pat = item.rpartition("@")
    if not at2:
        lp_pat, dom_pat = "*", item
    lp_cmp = lp if flags.caseful else lp.lower()
    if lp_pat.startswith("*"):
        if not _fold(lp_cmp, caseless).endswith(_fold(lp_pat[1:], caseless)):
            return Outcome.NOMATCH
    elif _fold(lp_pat, caseless) != _fold(lp_cmp, caseless):
        return Outcome.NOMATCH
    if dom_pat.startswith("+"):
        return _named_domain(ctx, dom_pat[1:], dom)
    return domain_item(ctx, dom_pat, dom, flags)


def _named_domain(ctx: "EvalContext", name: str, domain: str) -> Outcome:
    spec = (ctx.policy.lists.get("domain") or {}).get(name)
    if spec is None:
        ctx.log_lines.append(f"address list: no domain list named +{name}")
        return Outcome.DEFER
    result = _matching.match(ctx, spec, domain, "domain", 1)
    if result is Result.OK:
        return Outcome.MATCH
    return Outcome.DEFER if result is Result.DEFER else Outcome.NOMATCH


def _host(ctx: "EvalContext", item: str, subject: str, flags: Flags) -> Outcome:
    return _hosts.host_item(ctx, item, subject, flags, names_allowed=True)


def _ip(ctx: "EvalContext", item: str, subject: str, flags: Flags) -> Outcome:
    return _hosts.host_item(ctx, item, subject, flags, names_allowed=False)


MATCHERS: dict[str, Matcher] = {
    "host": _host, "ip": _ip, "domain": domain_item, "localpart": localpart_item,
    "address": address_item, "string": string_item,
}


# Imported last (both import this module): module objects, looked up when called. A
# function-level import runs the import machinery on every list item matched.
from . import atat as _atat, hosts as _hosts, matching as _matching, mx as _mx  # noqa: E402
