"""`${if}` conditions: each returns (true?, locals to bind in the yes branch).

Numeric comparisons and `bool` fail the expansion (ExpansionFailed) on bad input rather than
guessing, as Exim does. `and`/`or` stop at the first deciding operand.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Callable

from .. import plugs
from ..errors import ExpansionFailed, LookupDefer
from ..outcome import Result
from .ast import Cond
from . import aclcall, headers
from .regexes import search

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

_NUMBER = re.compile(r"^\s*([+-]?\d+)\s*([KkMmGg]?)\s*\Z")
_SUFFIX = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}

Bindings = dict[str, str]


def number(text: str) -> int:
    """Parse an Exim comparison operand: optional sign, digits, optional K/M/G; "" is 0."""
    if not text.strip():
        return 0
    m = _NUMBER.match(text)
    if not m:
        raise ExpansionFailed(f'"{text[:64]}" is not a number')
    return int(m.group(1)) * _SUFFIX[m.group(2).lower()]


def truth(text: str, lax: bool) -> bool:
    """`bool` / `bool_lax` semantics."""
    t = text.strip().lower()
    if lax:
        return t not in ("", "false", "no", "0")
    if t in ("", "false", "no"):
        return False
    if t in ("true", "yes"):
        return True
    if re.fullmatch(r"[+-]?\d+", t):
        return int(t) != 0
    raise ExpansionFailed(f'"{text[:64]}" is not a boolean')


_NUMERIC: dict[str, Callable[[int, int], bool]] = {
    "=": lambda a, b: a == b, "==": lambda a, b: a == b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_LEXICAL: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda a, b: a == b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
}


def _ip(text: str, version: int | None) -> bool:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return version is None or ip.version == version


def test(ctx: "EvalContext", cond: Cond) -> tuple[bool, Bindings]:
    """Evaluate a condition, applying its negation (a negated condition binds nothing)."""
    ok, bindings = _positive(ctx, cond)
    if cond.negated:
        return (not ok), {}
    return ok, bindings


def _positive(ctx: "EvalContext", cond: Cond) -> tuple[bool, Bindings]:
    evaluate_seq = _evaluate.evaluate_seq
    name = cond.name
    if name == "and":
        # Exim: a match's $0..$9 (and an inlist's $value) are seen by the sub-conditions after
        # it; afterwards the values of the last match that set them remain.
        bound = _evaluate.bound
        carried: Bindings = {}
        for sub in cond.subconds:
            with bound(ctx, carried):
                ok, got = test(ctx, sub)
            if not ok:
                return False, {}
            carried = {**carried, **got}
        return True, carried
    if name == "or":
        for sub in cond.subconds:       # Exim: the values come from the first one that is true
            ok, got = test(ctx, sub)
            if ok:
                return True, got
        return False, {}
    if name == "def":
        if cond.header is not None:
            return headers.header_exists(ctx, cond.header.name), {}
        variable = _evaluate.variable
        return variable(ctx, cond.target) != "", {}
    args = [evaluate_seq(ctx, a) for a in cond.args]
    if name == "acl":
        return aclcall.test(ctx, args)
    if name == "match":
        m = search(cond.regex, args[1], args[0])
        if m is None:
            return False, {}
        groups = {"0": m.group(0)}
        for k in range(1, 10):
            groups[str(k)] = (m.group(k) or "") if k <= (m.re.groups or 0) else ""
        return True, groups
    if name in _NUMERIC:
        return _NUMERIC[name](number(args[0]), number(args[1])), {}
    if name in _LEXICAL:
        return _LEXICAL[name](args[0], args[1]), {}
    if name.endswith("i") and name[:-1] in _LEXICAL:
        return _LEXICAL[name[:-1]](args[0].lower(), args[1].lower()), {}
    if name in ("bool", "bool_lax"):
        return truth(args[0], name == "bool_lax"), {}
    if name in ("isip", "isip4", "isip6"):
        return _ip(args[0], {"isip": None, "isip4": 4, "isip6": 6}[name]), {}
    if name in ("inlist", "inlisti"):
        return _inlist(args[0], args[1], name == "inlisti")
    contributed = _functions.CONDITIONS.get(name)       # a feature's condition (functions.py)
    if contributed is not None:
        return contributed(ctx, args)
    return _list_condition(ctx, name, args[0], args[1])


def _inlist(subject: str, list_text: str, caseless: bool) -> tuple[bool, Bindings]:
    """Plain string membership in a list (no wildcards); binds $value to the matching item."""
    want = subject.lower() if caseless else subject
    for item in plugs.split_list(list_text):
        if (item.lower() if caseless else item) == want:
            return True, {"value": item}
    return False, {}


def _list_condition(ctx: "EvalContext", name: str, subject: str, list_text: str) -> tuple[bool, Bindings]:
    """match_ip / match_domain / match_address / match_local_part on an already expanded list."""
    kind = {"match_ip": "ip", "match_domain": "domain", "match_address": "address",
            "match_local_part": "localpart"}[name]
    result = plugs.match_list(ctx, list_text, subject, kind)
    if result is Result.DEFER:
        raise LookupDefer(f"{name}: a list lookup deferred")
    if result is Result.ERROR:
        raise ExpansionFailed(f"{name}: bad list")
    return result is Result.OK, {}


# Imported last (evaluate imports this module): looked up when called.
from . import evaluate as _evaluate  # noqa: E402
from . import functions as _functions  # noqa: E402
