"""Exim's `partial-` single-key lookups: `partialN-type`, `partialN(prefix)type`.

The key is looked up as it is, then with the prefix (default `*.`) in front of it and of
each shorter tail of its dot-separated components, down to N components (default 2).
With N = 0 a last key stands for "everything": nothing for an empty prefix, the prefix when
it is one character, the prefix without its final dot when it ends in one (`*`), else the
prefix. `type*` / `type*@` defaults are tried only after all of these (expand/lookup.py).
"""

from __future__ import annotations

import re
from typing import Iterator

#: `partial`, optional minimum count, then `-` (default prefix) or `(prefix)`.
PARTIAL = re.compile(r"partial(\d*)(?:-|\(([^)]*)\))")
DEFAULT_PREFIX = "*."
DEFAULT_MINIMUM = 2


def split(type_name: str) -> tuple[int | None, str, str]:
    """(minimum components or None when not partial, prefix, the lookup type that follows)."""
    m = PARTIAL.match(type_name)
    if m is None:
        return None, "", type_name
    minimum = int(m.group(1)) if m.group(1) else DEFAULT_MINIMUM
    prefix = DEFAULT_PREFIX if m.group(2) is None else m.group(2)
    return minimum, prefix, type_name[m.end():]


def keys(key: str, minimum: int, prefix: str) -> Iterator[str]:
    """The keys a partial lookup tries, in order (never the same key twice in a row)."""
    yield key
    last = key
    parts = key.split(".") if key else []
    for start in range(len(parts)):
        if len(parts) - start < minimum:
            return
        candidate = prefix + ".".join(parts[start:])
        if candidate != last:
            yield candidate
            last = candidate
    if minimum == 0 and prefix:
        final = prefix if len(prefix) == 1 else (prefix[:-1] if prefix.endswith(".") else prefix)
        if final != last:
            yield final


def captures(key: str, matched: str, prefix: str) -> dict[str, str]:
    """`$1` (the wild part) and `$2` (the fixed part) after a partial lookup found `matched`.

    The key itself: "" and the key; a prefixed tail: what the prefix stood for and the tail;
    a `*`-style default: the whole key and "" (for `partial0-`'s final key Exim 4.96 drops
    the key's last character from `$1`; we give the whole key).
    """
    if matched == key:
        return {"1": "", "2": key}
    if matched.startswith(prefix):
        tail = matched[len(prefix):]
        if tail and key.endswith("." + tail):
            return {"1": key[:-len(tail) - 1], "2": tail}
        if tail == key:
            return {"1": "", "2": key}
    return {"1": key, "2": ""}
