"""Header variables: `$h_` (decoded), `$bh_` (unfolded), `$rh_` (raw), `$lh_` (one item per header).

Values come from ctx.txn.header_values(name) exactly as the MTA gave them (folds kept).
A missing header, or no transaction yet, gives "". The result is capped at 64 KiB like Exim.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .. import lazy

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

_email_header = lazy.module("email.header")   # imported by the first $h_ that decodes

MAX_HEADER_EXPANSION = 64 * 1024
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NEWLINES = re.compile(r"[\r\n]+")


def unfold(value: str) -> str:
    """Remove folding line breaks (RFC 5322 unfolding). A line break that is not a fold
    becomes a space: message data must never be able to start a new header line when an
    expansion is used in add_header."""
    return _NEWLINES.sub(" ", _FOLD.sub("", value))


def decode(value: str) -> str:
    """Decode RFC 2047 encoded words; text that cannot be decoded is kept as it is."""
    if "=?" not in value:
        return value
    try:
        return str(_email_header.make_header(_email_header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, AssertionError):
        return value


def header_value(ctx: "EvalContext", mode: str, name: str) -> str:
    """The value of `$<mode>h_<name>:` for the current message."""
    if ctx.txn is None:
        return ""
    values = ctx.txn.header_values(name)
    if mode == "r":
        out = "\n".join(values)
    else:
        cooked = [unfold(v).strip() for v in values]
        if mode in ("h", "l"):
            # an encoded word may decode to CR/LF: those become spaces too (no header injection)
            cooked = [_NEWLINES.sub(" ", decode(v)).strip() for v in cooked]
        out = "\n".join(v for v in cooked if v)
    return out[:MAX_HEADER_EXPANSION]


def header_exists(ctx: "EvalContext", name: str) -> bool:
    """True if the current message has at least one header called `name`."""
    return ctx.txn is not None and bool(ctx.txn.header_values(name))
