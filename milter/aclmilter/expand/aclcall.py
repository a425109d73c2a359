"""`${acl{name}{arg1}...{arg9}}` and `${if acl{{name}{args}}}`: call a named ACL from an expansion.

The name and up to nine arguments are expanded; the arguments become `$acl_arg1..9` (unused
ones empty) and `$acl_narg` in the called ACL only. Outcomes, as Exim's:

- the ACL accepts or denies: the result is its expanded `message` text, "" if it set none;
- the ACL defers: a forced failure (ForcedFail: a condition using the expansion is skipped);
- anything else (error, discard, drop, unknown ACL, nesting too deep): the expansion fails.

The ACL runs in a child context, so its `$acl_arg*` never leak into the caller; `acl_c`/
`acl_m` variables it sets are shared, as with `acl =`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import plugs
from ..errors import ExpansionFailed, ForcedFail
from ..outcome import Result
from .ast import Cond, Literal, Op

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext


def _run(ctx: "EvalContext", args: list[str]) -> tuple[bool, str]:
    """(accepted?, message) of ACL args[0] run with arguments args[1:]; raises ForcedFail on
    defer and ExpansionFailed on any other result."""
    name = args[0].strip()
    decision = plugs.run_named_acl(ctx, name, args[1:])     # the engine, above expand/
    if decision.result in (Result.OK, Result.FAIL):
        return decision.result is Result.OK, decision.user_message or ""
    if decision.result is Result.DEFER:
        raise ForcedFail(f"ACL {name} deferred in ${{acl}}")
    raise ExpansionFailed(f"ACL {name} returned {decision.result.value} in ${{acl}}")


def call(ctx: "EvalContext", args: list[str]) -> str:
    """The `${acl{name}{args}}` item: the ACL's message (see module docstring)."""
    return _run(ctx, args)[1]


def test(ctx: "EvalContext", args: list[str]) -> tuple[bool, dict[str, str]]:
    """The `${if acl{{name}{args}}...}` condition: true on accept, false on deny, with the
    ACL's message as `$value` in the branches (forced failure on defer)."""
    accepted, message = _run(ctx, args)
    return accepted, {"value": message}


def static_targets(expansion: object) -> list[str]:
    """The ACL names of every `${acl{name}...}` in a parsed expansion whose name is fixed text
    (for load-time checks: the ACL exists, its items suit the calling stage)."""
    out: list[str] = []
    stack: list[object] = [getattr(expansion, "root", expansion)]
    for _ in range(100_000):                    # bounded: a parsed text has fewer nodes
        if not stack:
            break
        node = stack.pop()
        if isinstance(node, (Op, Cond)) and node.name == "acl" and node.args \
                and all(isinstance(p, Literal) for p in node.args[0].parts):
            out.append("".join(p.text for p in node.args[0].parts).strip())   # type: ignore[union-attr]
        if isinstance(node, tuple):
            stack.extend(node)
        elif hasattr(node, "__dataclass_fields__"):
            stack.extend(getattr(node, f) for f in node.__dataclass_fields__ if f != "regex")
    return out
