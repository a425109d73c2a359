"""List text: the `<c` separator prefix, splitting, and joining YAML sequences into list text.

The separator is read first; the rest of the text is one expansion, expanded at match time
and then split. With a printable separator a doubled separator is a literal one (`::`);
control-character separators (newline) cannot be escaped. Whitespace around items is
dropped and a trailing empty item is ignored, so `:` alone is one empty item.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from .. import expand
from ..errors import SyntaxProblem

KINDS = ("host", "domain", "address", "localpart", "string")
#: A list never yields more items than this (a guard for lists built from lookups).
MAX_ITEMS = 10000
_JOIN_CANDIDATES = (":", ";", ",", "|", "%", "&", "~", "\n")


@dataclass(frozen=True)
class ListSpec:
    """A parsed list: its separator, the expansion of its body, and its items if static."""

    text: str
    kind: str
    sep: str
    body: expand.Expansion = field(repr=False)
    body_offset: int = 0
    static_items: tuple[str, ...] | None = None

    @property
    def is_static(self) -> bool:
        return self.static_items is not None


def separator(text: str) -> tuple[str, int]:
    """Return (separator, offset where the items start) for a list text."""
    i = 0
    while i < len(text) and text[i] in " \t":
        i += 1
    if i + 1 < len(text) and text[i] == "<":
        c = text[i + 1]
        if c == "\\" and text[i + 2:i + 3] == "n":     # `<\n` written as two characters
            return "\n", i + 3
        if c in string.punctuation or ord(c) < 32 or ord(c) == 127:
            return c, i + 2
    return ":", 0


def split(body: str, sep: str) -> list[str]:
    """Split expanded list text into trimmed items (Exim string_nextinlist)."""
    out: list[str] = []
    i, n = 0, len(body)
    doubling = sep in string.punctuation
    while i < n and len(out) < MAX_ITEMS:
        while i < n and body[i].isspace() and body[i] != sep:
            i += 1
        if i >= n:
            break
        buf: list[str] = []
        while i < n:
            c = body[i]
            if c == sep:
                if doubling and i + 1 < n and body[i + 1] == sep:
                    buf.append(sep)
                    i += 2
                    continue
                i += 1
                break
            buf.append(c)
            i += 1
        out.append("".join(buf).rstrip())
    return out


def split_text(text: str) -> list[str]:
    """Split a list that is already expanded (its `<c` prefix is honoured)."""
    sep, off = separator(text)
    return split(text[off:], sep)


def parse_list(text: str, kind: str) -> ListSpec:
    """Parse a list of `kind`; raises SyntaxProblem with the offset of the mistake."""
    if kind not in KINDS:
        raise SyntaxProblem(f"unknown list kind {kind!r}", 0)
    sep, off = separator(text)
    try:
        body = expand.parse(text[off:])
    except SyntaxProblem as exc:
        raise SyntaxProblem(str(exc), exc.offset + off) from None
    static = tuple(split(body.literal, sep)) if body.is_static else None
    return ListSpec(text, kind, sep, body, off, static)


def join_items(items: list[str]) -> str:
    """Join YAML sequence items into list text that splits back into the same (trimmed) items.

    A separator that occurs in no item is preferred, because doubling a `:` would also change
    `$h_x:` or `${lc:...}` inside an item; if every candidate occurs, `:` is used with doubling.
    """
    items = [i.strip() for i in items]
    sep = next((c for c in _JOIN_CANDIDATES if not any(c in i for i in items)), None)
    if sep is None:
        sep = ":"
        items = [i.replace(":", "::") for i in items]
    glue = "\n" if sep == "\n" else f" {sep} "
    text = f"<{sep}" + glue.join(items)
    if items and items[-1] == "":
        text += glue.rstrip(" ")       # keep a final empty item from being dropped
    return text
