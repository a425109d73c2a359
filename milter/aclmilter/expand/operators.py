"""Operators `${name:text}` and function items `${sg{..}{..}{..}}`, `${substr{..}..}`, `${length{..}..}`.

Each returns a string or raises ExpansionFailed; none reads files or runs anything.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Callable

from .. import lazy, plugs
from ..errors import ExpansionFailed
from . import arith
from .ast import Op
from .names import lookup_entry
from .regexes import MAX_SUBJECT, dynamic

_email_utils = lazy.module("email.utils")   # socket, calendar, random: only ${address:} etc. need it

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

_INT = re.compile(r"^\s*[+-]?\d+\s*\Z", re.ASCII)   # int() must accept what this accepts
_QUOTE_SAFE = re.compile(r"^[A-Za-z0-9_.\-]*\Z")
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")


def apply(ctx: "EvalContext", node: Op) -> str:
    """Evaluate an operator or function item node."""
    evaluate_seq = _evaluate.evaluate_seq
    args = [evaluate_seq(ctx, a) for a in node.args]
    name = node.name
    implemented = _functions.FUNCTIONS.get(name)
    if implemented is not None:
        return implemented(ctx, node, args)
    if name == "sg":
        return sg(node, args[0], args[1], args[2])
    if name == "substr":
        if len(args) == 3:
            return substr(args[2], _int(args[0], "substr"), _int(args[1], "substr"))
        return substr(args[0], node.params[0], node.params[1] if len(node.params) > 1 else None)
    if name == "length":
        if len(args) == 2:
            n = _int(args[0], "length")
            return args[1][:max(n, 0)]
        return args[0][:node.params[0]]
    text = args[0]
    simple = _SIMPLE.get(name)
    if simple is not None:
        return simple(text)
    if name.startswith("quote_"):
        return quote_for(name[6:], text)
    raise ExpansionFailed(f"internal: unknown operator {name}")


def _int(text: str, what: str) -> int:
    if not _INT.match(text):
        raise ExpansionFailed(f'{what}: "{text[:40]}" is not an integer')
    return int(text)


def substr(s: str, start: int, length: int | None) -> str:
    """Exim substr: offset from 0 (negative counts from the end); without a length, a
    positive offset takes the rest of the string and a negative one everything up to and
    including that character."""
    n = len(s)
    if start >= 0:
        if start > n:
            return ""
        return s[start:] if length is None else s[start:start + max(length, 0)]
    begin = n + start
    if length is None:
        return s[:begin + 1] if begin >= 0 else ""
    end = begin + max(length, 0)
    return s[max(begin, 0):max(end, 0)]


def sg(node: Op, subject: str, pattern: str, replacement: str) -> str:
    """Replace every match of the regex; `$0`..`$9` in the replacement stand for groups."""
    rx = node.regex if node.regex is not None else dynamic(pattern)
    subject = subject[:MAX_SUBJECT]

    def repl(m: re.Match[str]) -> str:
        def group(g: re.Match[str]) -> str:
            k = int(g.group(1) or g.group(2))
            return (m.group(k) or "") if k <= (rx.groups or 0) else ""
        return re.sub(r"\$(?:(\d)|\{(\d)\})", group, replacement)
    return rx.sub(repl, subject)


def _mask(text: str) -> str:
    """`${mask:ip/bits}` -> network address/bits; IPv6 written with dots as Exim does."""
    addr, sep, bits = text.strip().partition("/")
    if not sep or not bits.isdigit():
        raise ExpansionFailed(f'mask: "{text[:60]}" is not ip/bits')
    try:
        net = ipaddress.ip_network(f"{addr}/{int(bits)}", strict=False)
    except ValueError:
        raise ExpansionFailed(f'mask: "{text[:60]}" is not a valid address/bits') from None
    if net.version == 4:
        return f"{net.network_address}/{net.prefixlen}"
    return ".".join(net.network_address.exploded.split(":")) + f"/{net.prefixlen}"


def _reverse_ip(text: str) -> str:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ExpansionFailed(f'reverse_ip: "{text[:60]}" is not an IP address') from None
    return ip.reverse_pointer.rsplit(".", 2)[0]


def _address(text: str) -> str:
    pairs = _email_utils.getaddresses([text])
    return pairs[0][1] if pairs else ""


def _domain(text: str) -> str:
    addr = _address(text)
    return addr.rpartition("@")[2] if "@" in addr else ""


def _local_part(text: str) -> str:
    addr = _address(text)
    return addr.rpartition("@")[0] if "@" in addr else addr


def _listcount(text: str) -> str:
    return str(len(plugs.split_list(text)))


def _quote(text: str) -> str:
    """Exim ${quote:}: wrap in double quotes (escaping \\ and ") unless it is a plain word."""
    if text and _QUOTE_SAFE.match(text):
        return text
    quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + quoted + '"'


def _quote_local_part(text: str) -> str:
    if _DOT_ATOM.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_for(type_name: str, text: str) -> str:
    """`${quote_<type>:}` uses the lookup's own quote function; no function means no change."""
    if type_name == "local_part":
        return _quote_local_part(text)
    entry = lookup_entry(type_name)
    if entry is None:
        raise ExpansionFailed(f"unknown lookup type {type_name!r}")
    return entry.quote(text) if entry.quote is not None else text


_SIMPLE: dict[str, Callable[[str], str]] = {
    "lc": lambda s: "".join(c.lower() if c.isascii() else c for c in s),   # C locale: ASCII only
    "uc": lambda s: "".join(c.upper() if c.isascii() else c for c in s),
    "domain": _domain,
    "local_part": _local_part,
    "address": _address,
    "mask": _mask,
    "reverse_ip": _reverse_ip,
    "listcount": _listcount,
    "eval": lambda s: str(arith.evaluate(s)),
    "eval10": lambda s: str(arith.evaluate(s, decimal_only=True)),
    "quote": _quote,
    "quote_local_part": _quote_local_part,
    "strlen": lambda s: str(len(s)),
}


# Imported last (evaluate imports this module): looked up when called.
from . import evaluate as _evaluate  # noqa: E402
from . import functions as _functions  # noqa: E402
