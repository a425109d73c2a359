# SPDX-License-Identifier: GPL-3.0-or-later
"""The one table of expansion items and operators implemented outside `operators.py`: those
of expand/'s own modules (`${acl}`, digests, internationalisation) and function items and
`${if}` conditions contributed by feature modules (e.g. `${srs_encode}`,
`${if inbound_srs{...}{...}}`).

A feature registers the name, its number of braced arguments and a function that gets the
evaluation context and the expanded arguments. The parser then accepts it (argument count
checked at load); `operators.apply` / `conditions.test` call the function. The syntax of
the built-in entries (operator or item, argument counts) is declared in names.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from . import aclcall, digests, intl, names

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext
    from .ast import Op

Function = Callable[["EvalContext", list[str]], str]
#: what `operators.apply` calls: (context, the item's node, expanded arguments) -> text
Item = Callable[["EvalContext", "Op", list[str]], str]
#: a condition returns (true?, variables bound in the yes branch)
Condition = Callable[["EvalContext", list[str]], tuple[bool, dict[str, str]]]

#: name -> the function evaluating it (raises ExpansionFailed on bad input: ERROR, like Exim);
#: the built-in entries below, then what features register.
FUNCTIONS: dict[str, Item] = {
    "acl": lambda ctx, node, a: aclcall.call(ctx, a),
    "imapfolder": lambda ctx, node, a: intl.imapfolder(*a),
    "utf8_domain_to_alabel": lambda ctx, node, a: intl.domain_to_alabel(a[0]),
    "utf8_domain_from_alabel": lambda ctx, node, a: intl.domain_from_alabel(a[0]),
    "utf8_localpart_to_alabel": lambda ctx, node, a: intl.localpart_to_alabel(a[0]),
    "utf8_localpart_from_alabel": lambda ctx, node, a: intl.localpart_from_alabel(a[0]),
    "hash": lambda ctx, node, a: digests.hash_item(a, node.params),
    "md5": lambda ctx, node, a: digests.md5(a[0]),
    "sha1": lambda ctx, node, a: digests.sha1(a[0]),
    "sha256": lambda ctx, node, a: digests.sha2(a[0]),
    "sha2": lambda ctx, node, a: digests.sha2(a[0], node.params[0] if node.params else 256),
    "listquote": lambda ctx, node, a: digests.listquote(a[0], a[1]),
}
CONDITIONS: dict[str, Condition] = {}


def register(name: str, nargs: int, fn: Function) -> None:
    """Add a function item; a name that already exists fails at import."""
    if name in names.FUNCTION_ITEMS or name in FUNCTIONS:
        raise RuntimeError(f"expansion item {name!r} is already defined")
    names.FUNCTION_ITEMS[name] = nargs
    FUNCTIONS[name] = lambda ctx, node, args: fn(ctx, args)


def register_condition(name: str, nargs: int, fn: Condition) -> None:
    """Add an `${if name{arg}...}` condition; a name that already exists fails at import."""
    if name in names.CONDITIONS or name in CONDITIONS:
        raise RuntimeError(f"expansion condition {name!r} is already defined")
    names.CONDITIONS[name] = nargs
    CONDITIONS[name] = fn
