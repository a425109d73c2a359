"""Exim-style lists: host, domain, address, local-part and string lists.

Public API (used by the loader, the engine and conditions):

    parse_list(text, kind) -> ListSpec        raises errors.SyntaxProblem(message, offset)
    join_items(items) -> str                  a YAML sequence as one list text that round-trips
    validate(spec, named, kind) -> [SyntaxProblem]   load-time checks of a static list
    match(ctx, spec, subject, kind=None) -> outcome.Result   OK in list / FAIL / DEFER
    items(ctx, spec) -> list[str]             the expanded, split items
    split_text(text) -> list[str]             split an already expanded list (with `<c` prefix)
    match_text(ctx, text, subject, kind)      match an already expanded list (no expansion)
"""

from .spec import ListSpec, join_items, parse_list, split_text
from .matching import items, match, match_text
from .validate import validate
from .. import plugs

# expand/ (below us) matches and splits lists in ${if match_ip...}, inlist and ${listcount}
plugs.match_list.plug(match_text)
plugs.split_list.plug(split_text)

__all__ = ["ListSpec", "items", "join_items", "match", "match_text", "parse_list", "split_text", "validate"]
