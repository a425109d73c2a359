# SPDX-License-Identifier: GPL-3.0-or-later
"""Function items `${name{arg}{arg}...}` and `${if}` conditions contributed by feature modules
(e.g. `${srs_encode}`, `${if inbound_srs{...}{...}}`).

A feature registers the name, its number of braced arguments and a function that gets the
evaluation context and the expanded arguments. The parser then accepts it (argument count
checked at load); `operators.apply` / `conditions.test` call the function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from . import names

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

Function = Callable[["EvalContext", list[str]], str]
#: a condition returns (true?, variables bound in the yes branch)
Condition = Callable[["EvalContext", list[str]], tuple[bool, dict[str, str]]]

#: name -> the function evaluating it (raises ExpansionFailed on bad input: ERROR, like Exim)
FUNCTIONS: dict[str, Function] = {}
CONDITIONS: dict[str, Condition] = {}


def register(name: str, nargs: int, fn: Function) -> None:
    """Add a function item; a name that already exists fails at import."""
    if name in names.FUNCTION_ITEMS or name in FUNCTIONS:
        raise RuntimeError(f"expansion item {name!r} is already defined")
    names.FUNCTION_ITEMS[name] = nargs
    FUNCTIONS[name] = fn


def register_condition(name: str, nargs: int, fn: Condition) -> None:
    """Add an `${if name{arg}...}` condition; a name that already exists fails at import."""
    if name in names.CONDITIONS or name in CONDITIONS:
        raise RuntimeError(f"expansion condition {name!r} is already defined")
    names.CONDITIONS[name] = nargs
    CONDITIONS[name] = fn
