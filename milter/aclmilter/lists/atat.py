"""Address-list items `@@type;file`: the domain's entry is a list of local-part patterns.

The address's domain is looked up (single-key types may be `partial-` and/or `type*`;
query-style types run their query); not found -> no match. The value is a `:` list of
local-part items (literals, `*suffix`, `^regex`, lookups, `!` negation) matched against the
local part with the usual list rules. When the last item starts with `>`, the rest of it is
a key whose value continues the list (single-key types only), at most MAX_CHAIN lookups;
a longer chain is a loop and DEFERs. A lookup that cannot answer DEFERs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ExpansionFailed, LookupDefer
from ..expand import lookup as lookup_mod
from ..expand.names import lookup_entry
from ..outcome import Result
from .kinds import LOOKUP_ITEM, Flags, Outcome
from .spec import split_text

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

MAX_CHAIN = 50


def atat_item(ctx: "EvalContext", spec: str, local_part: str, domain: str, flags: Flags) -> Outcome:
    """Match `@@` + `spec` against an address split into `local_part` and `domain`."""
    m = LOOKUP_ITEM.match(spec)
    entry = lookup_entry(m.group(2)) if m and not m.group(1) else None
    if m is None or entry is None:
        ctx.log_lines.append(f"address list: bad @@ item {spec[:60]!r}")
        return Outcome.DEFER
    type_name, source = m.group(2), m.group(3).strip()
    key: str | None = domain
    for _ in range(MAX_CHAIN):
        try:
            value = lookup_mod.find(ctx, type_name, None if entry.query_style else key, source)
        except (LookupDefer, ExpansionFailed) as exc:
            ctx.log_lines.append(f"address list: @@{type_name}: {exc}")
            return Outcome.DEFER
        if value is None:
            return Outcome.NOMATCH
        items = split_text(value)
        key = None
        if items and items[-1].startswith(">") and not entry.query_style:
            key = items.pop()[1:].strip()
        if items:
            switches = ["+caseful"] if flags.caseful else []    # the outer list's +caseful carries over
            result = _matching.match_items(ctx, switches + items, "localpart", local_part, 1)
            if result is Result.OK:
                return Outcome.MATCH
            if result is Result.DEFER:
                return Outcome.DEFER
        if key is None:
            return Outcome.NOMATCH
    ctx.log_lines.append(f"address list: @@{type_name}: more than {MAX_CHAIN} chained lookups (a loop?)")
    return Outcome.DEFER


# Imported last (matching imports kinds).
from . import matching as _matching  # noqa: E402
