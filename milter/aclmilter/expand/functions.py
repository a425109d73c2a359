# SPDX-License-Identifier: GPL-3.0-or-later
"""Function items `${name{arg}{arg}...}` contributed by feature modules (e.g. `${srs_encode}`).

A feature registers the item's name, its number of braced arguments and a function that
gets the evaluation context and the expanded arguments. The parser then accepts the item
(argument count checked at load), and `operators.apply` calls the function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from . import names

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

Function = Callable[["EvalContext", list[str]], str]

#: name -> the function evaluating it (raises ExpansionFailed on bad input: ERROR, like Exim)
FUNCTIONS: dict[str, Function] = {}


def register(name: str, nargs: int, fn: Function) -> None:
    """Add a function item; a name that already exists fails at import."""
    if name in names.FUNCTION_ITEMS or name in FUNCTIONS:
        raise RuntimeError(f"expansion item {name!r} is already defined")
    names.FUNCTION_ITEMS[name] = nargs
    FUNCTIONS[name] = fn
