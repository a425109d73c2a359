"""The list walk shared by every kind: negation, named lists, files, unknown/defer switches.

Left to right, the first item that matches decides (`!item` means "not in list"); at the
end the list matches only if the last item was negative (implicit `*`). An item that cannot
be decided (DNS unknown) makes the whole list fail unless `+include_unknown` /
`+ignore_unknown` say otherwise; a deferred item DEFERs unless `+include_defer` /
`+ignore_defer`. Switches are not inherited by named sublists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ExpansionFailed, FileUnreadable, ForcedFail, LookupDefer
from ..outcome import Result
from . import files
from .kinds import MATCHERS, Flags, Outcome
from .spec import ListSpec, split, split_text

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

#: Named lists may refer to named lists; deeper than this is a loop the loader missed.
MAX_DEPTH = 16
_SWITCHES = {"ignore_unknown", "include_unknown", "ignore_defer", "include_defer", "caseful"}


def items(ctx: "EvalContext", spec: ListSpec) -> list[str]:
    """The expanded, split items (raises ForcedFail / ExpansionFailed / LookupDefer)."""
    if spec.static_items is not None:
        return list(spec.static_items)
    return split(spec.body.evaluate(ctx), spec.sep)


def _log(ctx: "EvalContext", message: str) -> None:
    ctx.log_lines.append(message)
    ctx.note("list", message, "defer")


def match(ctx: "EvalContext", spec: ListSpec, subject: str | None, kind: str | None = None,
          depth: int = 0) -> Result:
    """Is `subject` in the list? OK (yes), FAIL (no), DEFER (cannot tell now) or ERROR (a list
    or lookup file cannot be opened).

    For host lists `subject` is the client IP ("" = no remote host); None means the current
    connection's client. A forced failure while expanding the list means "not in list".
    """
    kind = kind or spec.kind
    try:
        values = items(ctx, spec)
        return match_items(ctx, values, kind, subject, depth)
    except ForcedFail:
        return Result.FAIL
    except (LookupDefer, ExpansionFailed) as exc:
        _log(ctx, f"{kind} list {spec.text[:80]!r}: {exc}")
        return Result.DEFER
    except FileUnreadable as exc:
        # ERROR, not DEFER: Exim ends the session here, so not even `warn` may go on
        _log(ctx, f"{kind} list {spec.text[:80]!r}: {exc}")
        return Result.ERROR


def match_text(ctx: "EvalContext", text: str, subject: str | None, kind: str) -> Result:
    """Match an already expanded list text (used by ${if match_ip/match_domain/...})."""
    return match_items(ctx, split_text(text), kind, subject, 0)


def _decide(outcome: Outcome, negated: bool, flags: Flags) -> Result | None:
    """Turn one item's outcome into the list's result, or None to go on with the next item."""
    if outcome is Outcome.MATCH:
        return Result.FAIL if negated else Result.OK
    if outcome is Outcome.UNKNOWN:
        if flags.include_unknown:
            return Result.FAIL if negated else Result.OK
        return None if flags.ignore_unknown else Result.FAIL
    if outcome is Outcome.DEFER:
        if flags.include_defer:
            return Result.FAIL if negated else Result.OK
        return None if flags.ignore_defer else Result.DEFER
    return None


def match_items(ctx: "EvalContext", values: list[str], kind: str, subject: str | None,
                depth: int) -> Result:
    """Walk split items (see module docstring)."""
    if kind == "host" or kind == "ip":
        subject = ctx.conn.client.address if subject is None else subject
    subject = subject or ""
    matcher = MATCHERS[kind]
    flags = Flags()
    last_negated = False
    for raw in values:
        item, negated = raw, False
        while item.startswith("!"):
            negated = not negated
            item = item[1:].lstrip()
        if item.startswith("+") and item[1:] in _SWITCHES and not negated:
            setattr(flags, item[1:], True)
            continue
        last_negated = negated
        if item.startswith("+"):
            result = _named(ctx, item[1:], kind, subject, depth)
            if result is Result.DEFER:
                return Result.DEFER
            if result is Result.OK:
                return Result.FAIL if negated else Result.OK
            continue
        if item.startswith("/"):
            decided, last_line_negated = _file(ctx, item, kind, subject, negated, flags)
            if decided is not None:
                return decided
            last_negated = negated != last_line_negated
            continue
        decided = _decide(matcher(ctx, item, subject, flags), negated, flags)
        if decided is not None:
            return decided
    return Result.OK if last_negated else Result.FAIL


def _named(ctx: "EvalContext", name: str, kind: str, subject: str, depth: int) -> Result:
    table_kind = "host" if kind == "ip" else kind
    spec = (ctx.policy.lists.get(table_kind) or {}).get(name)
    if spec is None or depth >= MAX_DEPTH:
        why = "no such named list" if spec is None else "named lists nested too deep"
        _log(ctx, f"{table_kind} list +{name}: {why}")
        return Result.DEFER
    return match(ctx, spec, subject, kind, depth + 1)


def _file(ctx: "EvalContext", item: str, kind: str, subject: str, negated: bool,
          flags: Flags) -> tuple[Result | None, bool]:
    """Match the lines of a list file; returns (decision or None, last line negated)."""
    try:
        lines = files.list_file(item)
    except LookupDefer as exc:
        _log(ctx, f"{kind} list: {exc}")
        return Result.DEFER, False
    matcher = MATCHERS[kind]
    line_negated = False
    for line in lines:
        entry, line_negated = line, False
        if entry.startswith("!"):
            line_negated = True
            entry = entry[1:].lstrip()
        decided = _decide(matcher(ctx, entry, subject, flags), negated != line_negated, flags)
        if decided is not None:
            return decided, line_negated
    return None, line_negated
