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
    entry = lookup_entry(type_name)
    if entry is None:
        raise ExpansionFailed(f"unknown lookup type {type_name!r}")
    if entry.query_style:
        return entry.find(ctx, None, source)
    if key is None:
        raise ExpansionFailed(f"{type_name} needs a key")
    minimum, prefix, _ = partial.split(type_name)
    for candidate in ((key,) if minimum is None else partial.keys(key, minimum, prefix)):
        value = entry.find(ctx, candidate, source)
        if value is not None:
            return value
    if not type_name.endswith("*") and not type_name.endswith("*@"):
        return None
    if type_name.endswith("*@") and "@" in key:
        value = entry.find(ctx, "*@" + key.rpartition("@")[2], source)
        if value is not None:
            return value
    return entry.find(ctx, "*", source)
