"""What the session tells the MTA: response types, and the decision → response mapping.

Pure: no state, no logging. Monitor mode is applied later (monitor.py, Session._finish).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .actions import Decision, Edits, Reply
from .outcome import Result


class Action(enum.Enum):
    """What the MTA is told for one callback."""

    CONTINUE = "continue"
    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DISCARD = "discard"


@dataclass(frozen=True)
class Response:
    action: Action
    reply: Reply | None = None
    drop: bool = False          # Exim `drop`: the session must end after this reply


CONTINUE = Response(Action.CONTINUE)


@dataclass(frozen=True)
class HeldRefusal:
    """A refusal from a step the MTA did not wait for, given at the next step it waits for.

    `stage` is where it arose, `where` the statement (file:line) or "internal error".
    """

    stage: str
    response: Response
    where: str


@dataclass
class EomResult:
    response: Response
    edits: Edits
    header_changes: list[tuple[str, int, str]]   # (name, index, new value or "" to delete)
    quarantine: str | None
    summary: dict


def for_decision(decision: Decision) -> Response:
    """The MTA response for a stage decision (before monitor mode): accept and discard go
    on (a discard is acted on at EOM), deny rejects, drop rejects and ends the session,
    defer and error tempfail."""
    r = decision.result
    if r is Result.OK or r is Result.DISCARD:
        return CONTINUE
    if r is Result.FAIL:
        return Response(Action.REJECT, decision.reply)
    if r is Result.DROP:
        return Response(Action.REJECT, decision.reply, drop=True)
    return Response(Action.TEMPFAIL, decision.reply)


def outcome_word(response: Response) -> str:
    """The log line's word for a final response: accept, reject, tempfail, discard or drop."""
    if response.action is Action.CONTINUE or response.action is Action.ACCEPT:
        return "accept"
    return "drop" if response.drop else response.action.value
