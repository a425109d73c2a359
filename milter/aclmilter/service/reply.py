"""Map a session `Response` to a libmilter return code and an optional `setreply` call.

Rules (libmilter and Postfix, see docs/mta.md):
- libmilter only sends a custom reply when its class matches the return code: 5xx with
  REJECT, 4xx with TEMPFAIL. A mismatching reply is coerced to the class of the action.
- A `%` must be doubled in milter reply text (libmilter treats it as a format escape; Postfix
  turns `%%` back into `%`).
- Before end of message, ACCEPT is sent as CONTINUE: a milter ACCEPT at RCPT would make the
  MTA skip every later callback (and ACL) of the message, whereas Exim `accept` only ends
  the current ACL.
- `drop` (Exim: reply, then close the connection): Postfix hangs up after any reply whose
  code is 421 or 521 (smtpd_chat.c), so the reply code becomes 521 (permanent, the Exim
  sense of `drop`) with REJECT; a tempfail-class drop becomes 421 with TEMPFAIL.
"""

from __future__ import annotations

from dataclasses import dataclass

import milter

from ..actions import Reply
from ..replies import INTERNAL_TEMPFAIL
from ..responses import Action, Response

#: setreply arguments of the tempfail fallback (the internal-error reply's code and text)
_TEMPFAIL_ARGS = (str(INTERNAL_TEMPFAIL.code), str(INTERNAL_TEMPFAIL.ecode), INTERNAL_TEMPFAIL.lines[0])
#: libmilter refuses lines longer than this (MAXREPLYLEN 980 incl. code and status).
MAX_LINE = 900


@dataclass(frozen=True)
class MilterReply:
    """What the glue does: return `rc`, after calling setreply(*setreply) when not None."""

    rc: int
    setreply: tuple[str | None, ...] | None = None   # setreply(code, xcode or None, lines...)


def _escape(line: str) -> str:
    return line.replace("%", "%%")[:MAX_LINE]


def _reply_args(reply: Reply | None, klass: int, drop: bool, default: tuple[str, str, str]) -> tuple[str | None, ...]:
    """setreply arguments (code, enhanced code, line1, line2, ...) with the class forced."""
    code: str
    ecode: str | None
    lines: tuple[str, ...]
    if reply is None:
        code, ecode, lines = default[0], default[1], (default[2],)
    else:
        code, ecode, lines = str(reply.code), reply.ecode, reply.lines
    if code[0] != str(klass):
        code = default[0]
    if drop:
        code = "521" if klass == 5 else "421"
    if (ecode is None and reply is None) or (ecode is not None and ecode[0] != str(klass)):
        ecode = f"{klass}.7.1" if klass == 5 else "4.7.1"
    # ecode None: `enhanced_status_codes: as_given` and the message gave none (libmilter
    # then sends the bare code, as Exim does)
    if drop and klass == 4 and ecode is not None:
        ecode = "4.7.0"
    if ecode is None and lines and lines[0][:1].isdigit() and lines[0][:1] != str(klass):
        # Postfix calls "550 12 ..." a malformed reply (a digit after the code must be the
        # enhanced code's class) and tempfails everything after it: the text needs an X.Y.Z
        ecode = f"{klass}.7.1" if klass == 5 else "4.7.1"
    return (code, ecode, *(_escape(line) for line in lines))


def map_response(response: Response, at_eom: bool = False) -> MilterReply:
    """The libmilter return code (and reply) for one session response."""
    action = response.action
    if action is Action.CONTINUE:
        return MilterReply(milter.CONTINUE)
    if action is Action.ACCEPT:
        return MilterReply(milter.ACCEPT if at_eom else milter.CONTINUE)
    if action is Action.DISCARD:
        return MilterReply(milter.DISCARD)
    if action is Action.REJECT:
        return MilterReply(milter.REJECT, _reply_args(response.reply, 5, response.drop,
                                                      ("550", "5.7.1", "Administrative prohibition")))
    return MilterReply(milter.TEMPFAIL, _reply_args(response.reply, 4, response.drop, _TEMPFAIL_ARGS))
