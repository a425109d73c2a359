"""Exim string-expansion subset: parsed once at load into an AST, evaluated against a context.

Public API (used by the loader, engine, lists and conditions):

    parse(text) -> Expansion            raises errors.SyntaxProblem(message, offset)
    Expansion.evaluate(ctx) -> str      raises ForcedFail, ExpansionFailed, LookupDefer
    Expansion.variables() -> set[str]   every $name referenced (for load-time validation)
    Expansion.is_static / .literal      True / the text when there is nothing to expand

No command execution, no file writes: `${run}`, `${readsocket}`, `${perl}` and friends do not
exist and are refused at load.
"""

from .ast import Expansion, parse

__all__ = ["Expansion", "parse"]
