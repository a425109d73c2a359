"""Evaluation of parsed expansions against an EvalContext.

Outcomes: a string; `ForcedFail` for an unbraced `fail`; `ExpansionFailed` for every other
failure; `LookupDefer` when a lookup cannot answer now. `$value` and `$0..$9` are set in
ctx.locals only while the yes branch is expanded and restored afterwards, so nothing leaks
into later items.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from ..errors import ExpansionFailed, ForcedFail
from .ast import Header, If, Literal, Lookup, Op, Seq, Var
from . import headers, lookup as lookup_mod, names, partial

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

#: Nested expansion is bounded by the text; this caps the size of what one expansion builds.
MAX_RESULT = 1 << 20


def evaluate_seq(ctx: "EvalContext", seq: Seq) -> str:
    """Concatenate the values of every part of `seq`."""
    parts = seq.parts
    if len(parts) == 1:                  # most expansions are one variable or one ${...}
        text = evaluate_node(ctx, parts[0])
        if len(text) > MAX_RESULT:
            raise ExpansionFailed("expansion result too long")
        return text
    out: list[str] = []
    size = 0
    for part in parts:
        text = evaluate_node(ctx, part)
        size += len(text)
        if size > MAX_RESULT:
            raise ExpansionFailed("expansion result too long")
        out.append(text)
    return "".join(out)


def evaluate_node(ctx: "EvalContext", node: object) -> str:
    """The value of one node."""
    kind = type(node)
    # `type(node) is X` is the fast test here, and mypy does not narrow on it
    if kind is Literal:
        return node.text  # type: ignore[attr-defined, no-any-return]
    if kind is Var:
        return variable(ctx, node.name)  # type: ignore[attr-defined]
    run = _BY_TYPE.get(kind)
    if run is None:
        raise ExpansionFailed(f"internal: unknown expansion node {kind.__name__}")
    return run(ctx, node)  # type: ignore[no-any-return, operator]


def variable(ctx: "EvalContext", name: str) -> str:
    """`$name`: locals first, then the context (our own data variables default to "")."""
    if name in ctx.locals:
        return ctx.locals[name]
    if name in names.LOCAL_VARIABLES:
        try:
            return ctx.var(name)
        except ExpansionFailed:
            return ""
    return ctx.var(name)


@contextmanager
def bound(ctx: "EvalContext", values: dict[str, str]) -> Iterator[None]:
    """Set ctx.locals entries for the duration of a branch, then restore the previous state."""
    saved = {k: ctx.locals[k] for k in values if k in ctx.locals}
    ctx.locals.update(values)
    try:
        yield
    finally:
        for k in values:
            if k in saved:
                ctx.locals[k] = saved[k]
            else:
                ctx.locals.pop(k, None)


def _if(ctx: "EvalContext", node: If) -> str:
    ok, bindings = _conditions.test(ctx, node.cond)
    if ok:
        if node.yes is None:
            return "true"
        with bound(ctx, bindings):
            return evaluate_seq(ctx, node.yes)
    if node.fail:
        raise ForcedFail("forced failure in ${if}")
    if node.no is None:
        return ""
    with bound(ctx, bindings):          # only `acl` binds when false: its message as $value
        return evaluate_seq(ctx, node.no)


def _lookup(ctx: "EvalContext", node: Lookup) -> str:
    key = None if node.key is None else evaluate_seq(ctx, node.key)
    source = evaluate_seq(ctx, node.source)
    value, found = lookup_mod.find_key(ctx, node.type_name, key, source)
    if value is not None:
        if node.yes is None:
            return value
        binds = {"value": value}
        minimum, prefix, _ = partial.split(node.type_name)
        if minimum is not None and key is not None and found is not None:
            binds.update(partial.captures(key, found, prefix))     # Exim: $1, $2 of a partial match
        with bound(ctx, binds):
            return evaluate_seq(ctx, node.yes)
    if node.fail:
        raise ForcedFail("forced failure in ${lookup}")
    return "" if node.no is None else evaluate_seq(ctx, node.no)


# Imported last (both import this module): module objects, looked up when called.
from . import conditions as _conditions, operators as _operators  # noqa: E402

#: Node type -> its evaluator (Literal and Var, the most frequent, are tested first inline).
_BY_TYPE = {Header: lambda ctx, node: headers.header_value(ctx, node.mode, node.name),
            Seq: evaluate_seq, If: _if, Lookup: _lookup, Op: lambda ctx, node: _operators.apply(ctx, node)}
