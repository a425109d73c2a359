"""The units Session is made of, each on its own: decision → response mapping, monitor mode,
internal-error policy and the message record (the lifecycle: test_session.py)."""

from __future__ import annotations

import logging

import pytest

from aclmilter.actions import Decision, Edits, HeaderAdd, HeaderPosition, Reply
from aclmilter.checks.proxy import ProxyState
from aclmilter.conditions.proxy import STATE as PROXY
from aclmilter.internal import internal_error, internal_response
from aclmilter.monitor import Monitor
from aclmilter.msglog import message_record
from aclmilter.outcome import Result
from aclmilter.replies import INTERNAL_REJECT, INTERNAL_TEMPFAIL
from aclmilter.responses import CONTINUE, Action, Response, for_decision, outcome_word
from aclmilter.state import ClientIdentity, Connection, Recipient, Transaction

NO = Reply(550, "5.7.1", ("no",))


@pytest.mark.parametrize(("result", "expected"), [
    (Result.OK, CONTINUE), (Result.DISCARD, CONTINUE), (Result.FAIL, Response(Action.REJECT, NO)),
    (Result.DROP, Response(Action.REJECT, NO, drop=True)), (Result.DEFER, Response(Action.TEMPFAIL, NO)),
    (Result.ERROR, Response(Action.TEMPFAIL, NO))])
def test_decision_to_response(result: Result, expected: Response) -> None:
    assert for_decision(Decision(result, NO, where="p.yaml:1")) == expected


def test_outcome_words() -> None:
    assert [outcome_word(r) for r in (CONTINUE, Response(Action.ACCEPT), Response(Action.REJECT, NO),
                                      Response(Action.REJECT, NO, drop=True), Response(Action.DISCARD))] == \
        ["accept", "accept", "reject", "drop", "discard"]


def test_monitor_remembers_the_first_refusal_per_scope_and_names_it() -> None:
    m = Monitor()
    m.note("reject", "rcpt", "p.yaml:3")
    m.note("tempfail", "data", "p.yaml:9")
    assert m.text(Edits()) == "would reject at rcpt (p.yaml:3)"
    m.note("tempfail", "helo", "p.yaml:1")
    assert m.text(Edits()) == "would tempfail at helo (p.yaml:1)"     # the connection's comes first
    m.new_transaction()
    m.new_connection()
    assert m.text(Edits()) == "would accept"


def test_monitor_edits_keep_headers_and_drop_recipient_changes_and_quarantine() -> None:
    edits = Edits()
    edits.add_header(HeaderAdd("X-A", "1", HeaderPosition.END, "p.yaml:2"))
    edits.delete_recipient("<a@x.test>", "p.yaml:4")
    edits.quarantine = "spam"
    kept = Monitor().edits(edits, "X-Dry")
    assert [h.name for h in kept.header_adds] == ["X-A", "X-Dry"]
    assert kept.header_adds[1].value == "would accept; would remove 1 recipient(s); would quarantine"
    assert not kept.rcpt_deletes and not kept.quarantine
    assert [h.name for h in Monitor().edits(edits, None).header_adds] == ["X-A"]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text += self.format(record) + "\n"


def test_internal_error_policy() -> None:
    assert internal_response("accept") is CONTINUE
    assert internal_response("reject") == Response(Action.REJECT, INTERNAL_REJECT)
    assert internal_response("tempfail") == internal_response("nonsense") == Response(Action.TEMPFAIL,
                                                                                      INTERNAL_TEMPFAIL)
    counted: list[str] = []
    metrics = type("M", (), {"internal_error": lambda self, where: counted.append(where)})()
    lines = Lines()
    logger = logging.getLogger("aclmilter")       # its propagation may be off (the daemon's setup)
    logger.addHandler(lines)
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            got = internal_error("QID", "rcpt", {"on_internal_error": "reject"}, metrics)
    finally:
        logger.removeHandler(lines)
    assert got == Response(Action.REJECT, INTERNAL_REJECT) and counted == ["rcpt"]
    assert "QID internal error at rcpt" in lines.text and "ValueError: boom" in lines.text


def test_message_record() -> None:
    conn = Connection(client=ClientIdentity(address="192.0.2.1", name="c.test"), helo="c.test")
    PROXY.put(conn, ProxyState(proxied=True, address="198.51.100.9", port="4000"))      # a feature's field
    txn = Transaction(sender="a@s.test", recipients=[Recipient("u@x.test"), Recipient("r@x.test", accepted=False)])
    rec = message_record(conn, txn, "QID", "reject_at_rcpt", "p.yaml:3", monitor=False)
    assert rec == {"queue_id": "QID", "client": "c.test[192.0.2.1]", "helo": "c.test", "sender": "<a@s.test>",
                   "recipients": ["u@x.test"], "decision": "reject_at_rcpt", "where": "p.yaml:3", "checks": {},
                   "prx": "[198.51.100.9]:4000", "dry_run": False}
    rec = message_record(Connection(), None, "-", "aborted", "", monitor=True)
    assert (rec["sender"], rec["prx"], rec["dry_run"]) == ("", "", True)
