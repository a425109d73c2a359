"""One entry point for running a lookup by type name, with Exim's `type*` / `type*@` defaults.

`find` returns the value or None; LookupDefer from the lookup passes through unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ExpansionFailed
from . import partial
from .names import lookup_entry

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext


def find(ctx: "EvalContext", type_name: str, key: str | None, source: str) -> str | None:
    """Look `key` up in `source` with lookup `type_name` (e.g. lsearch, lsearch*, lsearch*@).

    `partial-type` first tries the shorter wildcard keys of expand/partial.py; then `type*`
    retries the key "*" when the key is not found; `type*@` first retries "*@domain"
    (domain = text after the key's last "@") and then "*".
    """
    return find_key(ctx, type_name, key, source)[0]


def find_key(ctx: "EvalContext", type_name: str, key: str | None, source: str) -> tuple[str | None, str | None]:
    """`find`, also returning the key that was found (None for query-style lookups)."""
    entry = lookup_entry(type_name)
    if entry is None:
        raise ExpansionFailed(f"unknown lookup type {type_name!r}")
    if entry.query_style:
        return entry.find(ctx, None, source), None
    if key is None:
        raise ExpansionFailed(f"{type_name} needs a key")
    minimum, prefix, _ = partial.split(type_name)
    candidates = [key] if minimum is None else list(partial.keys(key, minimum, prefix))
    if type_name.endswith("*@") and "@" in key:
        candidates.append("*@" + key.rpartition("@")[2])
    if type_name.endswith("*") or type_name.endswith("*@"):
        candidates.append("*")
    for candidate in candidates:
        value = entry.find(ctx, candidate, source)
        if value is not None:
            return value, candidate
    return None, None
