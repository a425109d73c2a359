"""The parsed form of an expansion string: immutable nodes and the `Expansion` wrapper.

Nodes are built only by `expand.parser` and evaluated only by `expand.evaluate`; they hold no
behaviour so the tree can be shared between threads and compared in tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext


@dataclass(frozen=True)
class Literal:
    """Text taken as it is (escapes already processed)."""

    text: str


@dataclass(frozen=True)
class Var:
    """`$name` or `${name}`."""

    name: str


@dataclass(frozen=True)
class Header:
    """`$h_name:` and friends; `mode` is one of "h" (decoded), "b" (unfolded), "r" (raw), "l" (list)."""

    mode: str
    name: str


@dataclass(frozen=True)
class Seq:
    """A concatenation of parts."""

    parts: tuple["Node", ...]


@dataclass(frozen=True)
class Cond:
    """One `${if}` condition. `args` are the braced operands; `regex` is precompiled when static."""

    name: str
    args: tuple[Seq, ...] = ()
    negated: bool = False
    subconds: tuple["Cond", ...] = ()       # and / or
    target: str = ""                        # def: variable name ("h_x" form kept with its mode)
    header: Header | None = None            # def:h_name:
    regex: re.Pattern[str] | None = None    # match with a static pattern


@dataclass(frozen=True)
class If:
    """`${if cond {yes}{no}}`; `no` is None when omitted; `fail` marks an unbraced fail."""

    cond: Cond
    yes: Seq | None
    no: Seq | None
    fail: bool = False


@dataclass(frozen=True)
class Lookup:
    """`${lookup{key}type{file}{yes}{no}}` (key is None for query-style types)."""

    type_name: str                 # as written, may end in "*" or "*@"
    key: Seq | None
    source: Seq                    # file name (static for single-key types) or query
    yes: Seq | None
    no: Seq | None
    fail: bool = False


@dataclass(frozen=True)
class Op:
    """An operator `${name:arg}` or a function item `${sg{..}{..}{..}}` with its arguments."""

    name: str
    args: tuple[Seq, ...]
    params: tuple[int, ...] = ()   # numeric parameters of length_N / substr_A_B
    regex: re.Pattern[str] | None = None


Node = Union[Literal, Var, Header, Seq, If, Lookup, Op]


def _walk_vars(node: object, out: set[str]) -> None:
    """Collect every variable referenced below `node` (header variables as "h_name" forms)."""
    if isinstance(node, Var):
        out.add(node.name)
    elif isinstance(node, Header):
        out.add(f"{node.mode}h_{node.name}" if node.mode != "h" else f"h_{node.name}")
    elif isinstance(node, Seq):
        for p in node.parts:
            _walk_vars(p, out)
    elif isinstance(node, Cond):
        if node.target:
            out.add(node.target)
        if node.header is not None:
            _walk_vars(node.header, out)
        for a in node.args:
            _walk_vars(a, out)
        for c in node.subconds:
            _walk_vars(c, out)
    elif isinstance(node, If):
        for n in (node.cond, node.yes, node.no):
            if n is not None:
                _walk_vars(n, out)
    elif isinstance(node, Lookup):
        for n in (node.key, node.source, node.yes, node.no):
            if n is not None:
                _walk_vars(n, out)
    elif isinstance(node, Op):
        for a in node.args:
            _walk_vars(a, out)


@dataclass(frozen=True)
class Expansion:
    """A parsed expansion string, evaluated per message with `evaluate(ctx)`.

    `is_static` is True when the text holds nothing that depends on a context (no variables,
    items or operators); `literal` is then the value `evaluate` returns (escapes such as
    `\\$` already processed, so it may differ from `text`).
    """

    text: str
    root: Seq = field(repr=False, compare=False)

    @property
    def is_static(self) -> bool:
        return all(isinstance(p, Literal) for p in self.root.parts)

    @property
    def literal(self) -> str:
        """The static value; raises ValueError if the expansion is not static."""
        if not self.is_static:
            raise ValueError("expansion is not static")
        return "".join(p.text for p in self.root.parts if isinstance(p, Literal))

    def variables(self) -> set[str]:
        """Every `$name` referenced anywhere in the text (for load-time validation and docs)."""
        out: set[str] = set()
        _walk_vars(self.root, out)
        return out

    def evaluate(self, ctx: "EvalContext") -> str:
        """Expand against `ctx`; raises ForcedFail, ExpansionFailed or LookupDefer."""
        return _evaluate.evaluate_seq(ctx, self.root)


def parse(text: str) -> Expansion:
    """Parse `text` once; raises errors.SyntaxProblem(message, offset) on any mistake."""
    from .parser import parse_text
    return Expansion(text, parse_text(text))


# Imported last: evaluate.py imports this module's node classes. A function-level import
# would run importlib's (pure-Python) relative-import code on every expansion.
from . import evaluate as _evaluate  # noqa: E402
