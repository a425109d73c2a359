"""Evaluate one ACL with Exim's semantics; pure: no milter calls, no SMTP I/O.

Conditions are ANDed left to right and evaluation stops at the first one that is not OK;
modifiers met before that point have acted. Negation flips only OK/FAIL. A DEFER ends the
ACL with defer for every verb except `warn`; ERROR always ends it; falling off the end is an
implicit deny. `message` and `log_message` are expanded only when the ACL decides.
"""

from __future__ import annotations

import logging

from .actions import (DEFAULT_ACCEPT_CODE, DEFAULT_DEFER_CODE, DEFAULT_DEFER_TEXT, DEFAULT_FAIL_CODE,
                      DEFAULT_FAIL_TEXT, Decision, build_reply, clean_line, queue_header_text,
                      split_message)
from . import plugs
from .context import EvalContext
from .errors import ExpansionFailed, FileUnreadable, ForcedFail, LookupDefer, SyntaxProblem
from .outcome import Result, Verb
from .policy.model import STEP_EVALUATE, STEP_LOG_MESSAGE, STEP_MESSAGE, Acl, ItemUse, Statement
from .registry import ArgMode, Kind

log = logging.getLogger("aclmilter.engine")

MAX_DEPTH = 20


def run(ctx: EvalContext, acl: Acl | None, *, top_level: bool = True) -> Decision:
    """Evaluate `acl` and return the Decision.

    Returns: OK (accept, incl. a stage left out of the policy), FAIL (deny / failing require /
    implicit deny), DEFER, ERROR, DISCARD or DROP, with the reply to send and the file:line of
    the statement that decided.
    """
    if acl is None:
        ctx.note("-", f"no {ctx.stage.key} ACL in the policy", "accept")
        return Decision(Result.OK, where="no ACL", stage=ctx.stage)
    if ctx.depth > MAX_DEPTH:
        ctx.note(acl.name, "ACL nested too deep", "error")
        return _decide(ctx, Result.ERROR, None, None, f"{acl.mark.file}:{acl.mark.line}", Verb.DENY)
    for st in acl.statements:
        # The statement's items in order: conditions and modifiers run until one is not OK;
        # `message`/`log_message` count only if reached; a failure after `endpass` is noted.
        message = log_message = None
        after_endpass = False
        rc = Result.OK
        for step, use in st.steps:
            if step == STEP_EVALUATE:
                rc = evaluate_item(ctx, use, st)
                if rc is not Result.OK:
                    break
            elif step == STEP_MESSAGE:
                message = use
            elif step == STEP_LOG_MESSAGE:
                log_message = use
            else:
                after_endpass = True
        decided = _verb_outcome(ctx, st, rc, message, log_message, after_endpass)
        if decided is not None:
            return decided
    where = f"{acl.mark.file}:{acl.mark.line}"
    ctx.note(where, f"end of ACL {acl.name}: implicit deny", "deny")
    _hit(ctx, f"{where} (implicit deny)")
    return _decide(ctx, Result.FAIL, None, None, f"{where} (implicit deny at end of ACL {acl.name})", Verb.DENY)


def _hit(ctx: EvalContext, where: str) -> None:
    metrics = ctx.services.metrics
    if metrics is not None:
        metrics.statement_hit(where)


def evaluate_item(ctx: EvalContext, use: ItemUse, st: Statement | None = None) -> Result:
    """Run one condition or modifier. Returns OK/FAIL/DEFER/ERROR (DROP/DISCARD from nested acl)."""
    where = st.where if st else "-"
    entry = use.entry
    try:
        if entry.arg is ArgMode.EXPANDED:
            if use.has_static:
                value = use.static
            else:
                try:
                    text = use.expansion.evaluate(ctx)
                except ForcedFail:
                    # Exim: a forced failure in a pre-expanded item skips it (true, even negated).
                    ctx.note(where, f"{_label(use)}: forced expansion failure, item skipped", "ok")
                    return Result.OK
                value = entry.parse(text)
            rc = entry.run(ctx, value)
        elif entry.arg is ArgMode.LIST:
            rc = entry.run(ctx, use.expansion)
        else:
            rc = entry.run(ctx, use.static)
    except LookupDefer as exc:
        ctx.note(where, f"{_label(use)}: {exc}", "defer")
        return Result.DEFER
    except (ExpansionFailed, SyntaxProblem, FileUnreadable) as exc:
        ctx.note(where, f"{_label(use)}: {exc}", "error")
        ctx.log_lines.append(f"{where}: {_label(use)}: {exc}")
        return Result.ERROR
    except Exception as exc:  # one bad check must not kill the service
        log.exception("internal error in %s at %s", use.name, where)
        ctx.note(where, f"{_label(use)}: internal error: {exc!r}", "error")
        ctx.log_lines.append(f"{where}: internal error in {use.name}: {exc!r}")
        return Result.ERROR
    if use.negated:
        rc = rc.negated()
    if entry.kind is Kind.CONDITION and ctx.mode.trace:     # the label costs: build it only to trace
        ctx.note(where, _label(use), rc.value)
    return rc


def _label(use: ItemUse) -> str:
    text = use.text if len(use.text) <= 120 else use.text[:117] + "..."
    return f"{'!' if use.negated else ''}{use.name} = {text}"


def _verb_outcome(ctx: EvalContext, st: Statement, rc: Result, message: ItemUse | None,
                  log_message: ItemUse | None, after_endpass: bool) -> Decision | None:
    """Apply the verb table (exim-acl.md §1.2) to a statement whose items gave `rc` (the first
    result that was not OK, else OK); None means go on with the next statement."""
    verb = st.verb
    where = st.where
    if rc is Result.ERROR:
        _hit(ctx, where)
        return _decide(ctx, Result.ERROR, None, log_message, where, verb)
    if rc is Result.DEFER:
        if verb is Verb.WARN:
            ctx.note(where, "warn: a condition deferred, statement skipped", "defer")
            ctx.log_lines.append(f"{where}: warn statement skipped: a condition could not be tested")
            return None
        _hit(ctx, where)
        return _decide(ctx, Result.DEFER, None, log_message, where, verb)
    if rc is Result.DISCARD:
        # A nested ACL discarded: legal only under accept/discard, where it acts at once.
        _hit(ctx, where)
        if verb in (Verb.ACCEPT, Verb.DISCARD):
            return _decide(ctx, Result.DISCARD, None, log_message, where, verb)
        ctx.note(where, "nested ACL returned discard under a verb other than accept/discard", "error")
        return _decide(ctx, Result.ERROR, None, log_message, where, verb)
    passed = rc is Result.OK
    if verb is Verb.WARN:
        if passed:
            _hit(ctx, where)
            _warn(ctx, st, message, log_message)
        return None
    if verb is Verb.REQUIRE:
        if passed:
            return None
        _hit(ctx, where)
        result = Result.DROP if rc is Result.DROP else Result.FAIL
        return _decide(ctx, result, message, log_message, where, verb)
    if verb in (Verb.ACCEPT, Verb.DISCARD):
        if passed:
            _hit(ctx, where)
            if verb is Verb.DISCARD:
                return _decide(ctx, Result.DISCARD, None, log_message, where, verb)
            return _decide(ctx, Result.OK, None if after_endpass else message,
                           log_message, where, verb)
        if after_endpass:
            _hit(ctx, where)
            result = Result.DROP if rc is Result.DROP else Result.FAIL
            return _decide(ctx, result, message, log_message, where, verb)
        if ctx.mode.trace:
            ctx.note(where, f"{verb.value}: not all conditions true, next statement", "")
        return None
    if not passed:
        if ctx.mode.trace:
            ctx.note(where, f"{verb.value}: not all conditions true, next statement", "")
        return None
    _hit(ctx, where)
    result = {Verb.DENY: Result.FAIL, Verb.DEFER: Result.DEFER, Verb.DROP: Result.DROP}[verb]
    return _decide(ctx, result, message, log_message, where, verb)


def _expand_text(ctx: EvalContext, use: ItemUse | None) -> str | None:
    """Expand a deferred message; failure or empty result means "no message" (Exim)."""
    if use is None:
        return None
    try:
        text = use.expansion.evaluate(ctx)
    except ForcedFail:
        return None
    except (ExpansionFailed, LookupDefer) as exc:
        ctx.log_lines.append(f"{use.mark}: {use.name} expansion failed: {exc}")
        return None
    return text or None


def _warn(ctx: EvalContext, st: Statement, message: ItemUse | None, log_message: ItemUse | None) -> None:
    """A passing warn: log its log_message once per message; a bare `message` adds a header."""
    text = _expand_text(ctx, log_message)
    if text:
        line = clean_line(text.split("\n")[0])
        seen = ctx.txn.warned if ctx.txn is not None else None
        if seen is None or line not in seen:
            if seen is not None:
                seen.add(line)
            ctx.log_lines.append(f"Warning: {line}")
        ctx.note(st.where, f"warn: {line}", "logged")
    msg = _expand_text(ctx, message)
    if msg and ctx.txn is not None and ctx.txn.edits is not None:
        queue_header_text(ctx.txn.edits, msg, st.where)


def _decide(ctx: EvalContext, result: Result, message: ItemUse | None, log_message: ItemUse | None,
            where: str, verb: Verb) -> Decision:
    """Build the Decision: reply code and text per Exim's rules for this result and stage."""
    user = None if message is None else _expand_text(ctx, message)
    if user is None and result in (Result.FAIL, Result.DROP):
        user = ctx.cond_message
    logtext = None if log_message is None else _expand_text(ctx, log_message)
    reply = None
    add = ctx.policy.settings.get("enhanced_status_codes", "add") == "add"
    if user and ctx.policy.settings.get("split_long_replies"):
        user = split_message(user)          # Exim: before the code is taken from the text
    if result in (Result.FAIL, Result.DROP):
        reply = build_reply(user, DEFAULT_FAIL_CODE, DEFAULT_FAIL_TEXT, add)
    elif result is Result.DEFER:
        # Only the `defer` verb shows its message; a condition's defer gets the generic text,
        # except a nested ACL's defer, whose message comes out with it (Exim).
        reply = build_reply(user if verb is Verb.DEFER else ctx.cond_message, DEFAULT_DEFER_CODE,
                            DEFAULT_DEFER_TEXT, add)
    elif result is Result.ERROR:
        reply = build_reply(None, DEFAULT_DEFER_CODE, DEFAULT_DEFER_TEXT, add)
    elif result is Result.OK and user:
        # the 2xx/3xx text Exim would send; a milter cannot (`aclmilter bh --mta exim` shows it)
        reply = build_reply(user, DEFAULT_ACCEPT_CODE.get(ctx.stage, 250), "OK", add)
    if logtext is None and user:
        logtext = user.split("\n")[0]
    if ctx.mode.trace:
        ctx.note(where, f"{verb.value} decides: {result.value}" + (f" ({reply.text()})" if reply else ""),
                 result.value)
    return Decision(result, reply, logtext, where, ctx.stage, user)


@plugs.run_named_acl.plug
def run_named(ctx: EvalContext, name: str, args: list[str]) -> Decision:
    """Run the named ACL in a child context with $acl_arg1..9 and $acl_narg set (unused
    arguments empty); raises ExpansionFailed when there is no such ACL."""
    acl = ctx.policy.acls.get(name)
    if acl is None:
        raise ExpansionFailed(f"no ACL named {name!r}")
    child = ctx.child()
    for i in range(1, 10):
        child.locals[f"acl_arg{i}"] = args[i - 1] if i <= len(args) else ""
    child.locals["acl_narg"] = str(len(args))
    return run(child, acl, top_level=False)


@plugs.run_nested_acl.plug
def run_nested(ctx: EvalContext, name: str, args: list[str]) -> Result:
    """Run a named ACL from `acl = name args`; returns its result as a condition value. A
    nested refusal's or defer's message becomes the calling statement's (Exim)."""
    decision = run_named(ctx, name, args)
    if decision.reply is not None and decision.result in (Result.FAIL, Result.DROP, Result.DEFER):
        ctx.cond_message = "\n".join(decision.reply.lines)
    return decision.result
