"""End of message: the data ACL, the end-of-message hooks and the deliver stage, in order.

A message that reaches EOM: discards from MAIL/RCPT become recipient deletions (all
discarded: the message is discarded), the data ACL decides, `after_data` hooks queue their
edits (in monitor mode as for an accepted message), then the deliver ACL runs per recipient
(each kept, deleted, or the whole message tempfailed) and `after_deliver` hooks run for a
message that will be delivered. Works on a Session (session.py): its ACL runner, response
mapping and monitor-mode filter.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .actions import Decision, Edits
from .outcome import Result
from .replies import INTERNAL_TEMPFAIL
from .responses import CONTINUE, Action, EomResult, Response, for_decision, outcome_word
from .stages import Stage
from .state import Recipient, Transaction

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session

log = logging.getLogger("aclmilter")


def run(s: "Session") -> EomResult:
    """The end of a message the MTA waited for: the features' data hooks, discards from
    MAIL/RCPT, the data ACL, after_data hooks, the deliver ACL per recipient, after_deliver
    hooks, then the final response and edits (Session._eom_result)."""
    txn = s.txn
    if txn is None:
        txn = s.txn = Transaction()
        txn.edits = Edits()
    if (refused := s._refused_by_hooks("data", Stage.DATA)) is not None:
        return s._eom_result(refused[0], Edits(), None, outcome_word(refused[0]), where=refused[1])
    edits: Edits = txn.edits
    kept = [r for r in txn.recipients if r.accepted and not r.discarded]
    for r in txn.recipients:
        if r.accepted and r.discarded:
            edits.delete_recipient(r.raw, "discarded at MAIL/RCPT")
    if not kept:
        log.info("%s all recipients discarded before DATA: message discarded", s._qid())
        return s._eom_result(s._finish(Response(Action.DISCARD), "data"), edits, None, "discard")
    decision = s._run(Stage.DATA, command="data")
    hook_decision = decision
    if s.mode.monitor and decision.result is not Result.OK:
        # Monitor mode: the hooks add their headers (A-R, X-DCC, ...) as for an accepted message
        hook_decision = Decision(Result.OK, where=decision.where, stage=decision.stage)
    data_hooks = s.policy.eom_hooks("after_data")
    if data_hooks:
        ctx = s._ctx(Stage.DATA)
        for hook in data_hooks:
            hook.run(ctx, hook_decision)
        s._flush_log(ctx, "data hooks")
    response = for_decision(decision)
    if decision.result is Result.DISCARD:
        response = Response(Action.DISCARD)
    stage = "data"
    if response.action is not Action.CONTINUE and s.mode.monitor:
        # Monitor mode: note the refusal, then go on as if accepted, so the deliver ACL
        # and the verdict headers still run.
        response = s._finish(response, "data", decision.where)
    if response.action is Action.CONTINUE:
        response = deliver(s, kept, edits)
        if response.action is not Action.CONTINUE:
            stage = "deliver"
            if s.mode.monitor:
                response = s._finish(response, stage)
        deliver_hooks = s.policy.eom_hooks("after_deliver")
        if response.action is Action.CONTINUE and deliver_hooks:
            # Only a message that will be delivered gets after_deliver work (verdict headers).
            dctx = s._ctx(Stage.DELIVER)
            for hook in deliver_hooks:
                hook.run(dctx, hook_decision)
            s._flush_log(dctx, "deliver hooks")
    outcome = outcome_word(response) + ("_at_deliver" if stage == "deliver" and response is not CONTINUE else "")
    return s._eom_result(s._finish(response, stage), edits, decision, outcome)

def deliver(s: "Session", kept: list[Recipient], edits: Edits) -> Response:
    """Run the deliver ACL per recipient: keep, delete (discard/deny/drop) or tempfail all."""
    if Stage.DELIVER not in s.policy.stage_acls:
        return CONTINUE
    remaining = 0
    for r in kept:
        decision = s._run(Stage.DELIVER, r, command="deliver")
        if decision.result is Result.OK:
            remaining += 1       # kept, or replaced by its `redirect` address
            r.delivered = True
        elif decision.result in (Result.DISCARD, Result.FAIL, Result.DROP):
            r.delivered = False
            edits.delete_recipient(r.raw, decision.where)
            log.info("%s recipient %s not delivered (%s at %s)", s._qid(), r.address,
                     decision.result.value, decision.where)
        else:
            return Response(Action.TEMPFAIL, decision.reply or INTERNAL_TEMPFAIL)
    if remaining == 0:
        log.info("%s no recipient left after the deliver ACL: message discarded", s._qid())
        return Response(Action.DISCARD)
    return CONTINUE
