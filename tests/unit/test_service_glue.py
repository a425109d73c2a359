"""The pymilter glue with a fake libmilter context and scripted sessions (no sockets)."""

from __future__ import annotations

import logging
import socket
from typing import Any

import milter
import pytest

from aclmilter.actions import Edits, HeaderAdd, HeaderPosition, RecipientDelete, Reply
from aclmilter.policy.needs import Needs
from aclmilter.service import glue
from aclmilter.session import Action, EomResult, Response
from tests.harness.milterctx import FakeCtx, MtaDriver

CONT = Response(Action.CONTINUE)


class ScriptedSession:
    """A session whose answers (or exceptions) are set per callback by the test."""

    answers: dict[str, Any] = {}

    def __init__(self, runtime: Any, **kw: Any) -> None:
        self.txn = type("T", (), {"headers": [("Received", "x"), ("Subject", "s")]})()
        self.records: list = []

    def _ans(self, name: str) -> Any:
        a = self.answers.get(name, CONT)
        if isinstance(a, Exception):
            raise a
        return a

    def connect(self, *a: Any) -> Response: return self._ans("connect")
    def helo(self, *a: Any) -> Response: return self._ans("helo")
    def mail(self, *a: Any) -> Response: return self._ans("mail")
    def rcpt(self, *a: Any) -> Response: return self._ans("rcpt")
    def data(self, *a: Any) -> Response: return self._ans("data")
    def header(self, *a: Any) -> Response: return self._ans("header")
    def eoh(self) -> Response: return self._ans("eoh")
    def body(self, *a: Any) -> Response: return self._ans("body")
    def eom(self, macros: Any = None, held: Any = None) -> EomResult:
        if held is not None:      # as Session.eom: refused with the held answer, nothing else runs
            return EomResult(held.response, Edits(), [], None,
                             {"queue_id": "QID", "decision": f"{held.response.action.value}_at_{held.stage}",
                              "where": held.where})
        return self._ans("eom")
    def abort(self) -> None: pass
    def refuse_last_recipient(self, action: Any) -> None: self.records.append(("refused rcpt", action))
    def close(self) -> None: pass
    def log_record(self, *a: Any) -> dict: return {"queue_id": "QID", "decision": ""}


class FakeRuntime:
    def current(self) -> Any:
        raise RuntimeError("no policy in this unit test")


class Collect(logging.Handler):
    """The per-message log lines as the daemon's handlers would format them (message part)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def message_log() -> tuple[logging.Logger, list[str]]:
    """A private message logger (not the daemon's) whose lines the test reads."""
    logger = logging.Logger("test-messages", logging.INFO)     # not registered: no global state
    handler = Collect()
    logger.addHandler(handler)
    logger.propagate = False
    return logger, handler.lines


@pytest.fixture()
def m():
    ScriptedSession.answers = {}
    ctx = FakeCtx()
    logger, lines = message_log()
    milter_obj = glue.AclMilter(glue.GlueConfig(FakeRuntime(), session_factory=ScriptedSession,  # type: ignore[arg-type]
                                                message_log=logger))
    milter_obj.test_lines = lines  # type: ignore[attr-defined]
    obj = MtaDriver(milter_obj, ctx)
    opts = [milter.CURR_ACTS, 0x1FFFFF, 0, 0]
    assert obj.negotiate(opts) == milter.CONTINUE
    assert obj.connect("[203.0.113.7]", socket.AF_INET, ("203.0.113.7", 4711)) == milter.CONTINUE
    yield obj, ctx
    assert ctx.violations == []


def test_negotiation_asks_no_reply_for_header_and_body(m) -> None:
    obj, ctx = m
    assert obj._protocol & milter.P_NR_HDR and obj._protocol & milter.P_NR_BODY
    assert obj._protocol & milter.P_NOEOH and not obj._protocol & milter.P_NOHDRS
    asked = {c[1]: c[2] for c in ctx.calls if c[0] == "setsymlist"}
    # only the stages whose MTA defaults may lack what the session reads (each call costs a
    # GIL hand-over in pymilter); `i` from RCPT on is in both MTAs' defaults
    assert set(asked) == {milter.M_CONNECT, milter.M_HELO, milter.M_ENVFROM}
    assert "{client_addr}" in asked[milter.M_CONNECT] and "{auth_authen}" in asked[milter.M_ENVFROM]


def test_exception_in_callback_tempfails_and_service_goes_on(m) -> None:
    obj, ctx = m
    ScriptedSession.answers = {"rcpt": ValueError("boom")}
    assert obj.envfrom("<a@example.org>") == milter.CONTINUE
    assert obj.envrcpt("<b@example.test>") == milter.TEMPFAIL
    assert ("setreply", "451", "4.3.0", "Temporary local problem - please try later") in ctx.calls
    ScriptedSession.answers = {}
    assert obj.envrcpt("<c@example.test>") == milter.CONTINUE


def test_refusal_from_no_reply_step_is_given_at_eom(m) -> None:
    obj, ctx = m
    ScriptedSession.answers = {
        "body": Response(Action.TEMPFAIL, Reply(451, "4.3.0", ("spool full",))),
        "eom": EomResult(CONT, Edits(), [], None, {"queue_id": "QID"}),
    }
    obj.envfrom("<a@example.org>")
    assert obj.body(b"x") == milter.NOREPLY
    assert obj.eom() == milter.TEMPFAIL
    assert ("setreply", "451", "4.3.0", "spool full") in ctx.calls
    assert not any(c[0] in ("addheader", "delrcpt") for c in ctx.calls)


def test_eom_edits_in_fixed_order(m) -> None:
    obj, ctx = m
    ed = Edits()
    ed.add_header(HeaderAdd("X-End", "e"))
    ed.add_header(HeaderAdd("X-After-Received", "r", HeaderPosition.AFTER_RECEIVED))
    ed.rcpt_deletes.append(RecipientDelete("<gone@example.test>"))
    ScriptedSession.answers = {"eom": EomResult(CONT, ed, [("Subject", 1, "")], "hold it", {"queue_id": "QID"})}
    obj.envfrom("<a@example.org>")
    assert obj.eom() == milter.CONTINUE
    edits = [c for c in ctx.calls if c[0] != "setsymlist"]
    assert edits == [("delrcpt", "<gone@example.test>"), ("chgheader", "Subject", 1, ""),
                     ("addheader", "X-After-Received", "r", 2), ("addheader", "X-End", "e", -1),
                     ("quarantine", "hold it")]


def test_exception_at_eom_tempfails(m) -> None:
    obj, ctx = m
    ScriptedSession.answers = {"eom": RuntimeError("bad")}
    obj.envfrom("<a@example.org>")
    assert obj.eom() == milter.TEMPFAIL


def test_drop_sets_hangup_reply(m) -> None:
    obj, ctx = m
    ScriptedSession.answers = {"rcpt": Response(Action.REJECT, Reply(550, "5.7.1", ("go away",)), drop=True)}
    obj.envfrom("<a@example.org>")
    assert obj.envrcpt("<b@example.test>") == milter.REJECT
    assert ("setreply", "521", "5.7.1", "go away") in ctx.calls


class NeedsRuntime:
    """A runtime whose policy answers only at MAIL (so connect/HELO/RCPT are no-reply)."""

    def __init__(self) -> None:
        self.snap = type("Snap", (), {"needs": Needs(frozenset({"mail"}), ())})()

    def current(self) -> Any:
        return self.snap


@pytest.fixture()
def nr():
    created: list[dict] = []

    class Recording(ScriptedSession):
        def __init__(self, runtime: Any, **kw: Any) -> None:
            super().__init__(runtime, **kw)
            created.append(kw)

    runtime = NeedsRuntime()
    ScriptedSession.answers = {}
    ctx = FakeCtx()
    obj = MtaDriver(glue.AclMilter(glue.GlueConfig(runtime, session_factory=Recording,  # type: ignore[arg-type]
                                                   unix_socket=True)), ctx)
    assert obj.negotiate([milter.CURR_ACTS, 0x1FFFFF, 0, 0]) == milter.CONTINUE
    yield obj, ctx, created, runtime
    assert ctx.violations == []


EOM_OK = EomResult(CONT, Edits(), [], None, {"queue_id": "QID"})


def test_session_gets_the_snapshot_negotiated_with(nr) -> None:
    obj, _ctx, created, runtime = nr
    assert obj._protocol & milter.P_NR_CONN and obj._protocol & milter.P_NR_RCPT
    assert obj._protocol & milter.P_NODATA and obj._protocol & milter.P_NOHDRS
    assert not obj._protocol & milter.P_NR_MAIL
    obj.connect("[203.0.113.7]", socket.AF_INET, ("203.0.113.7", 4711))
    assert created == [{"listen_port": "", "snapshot": runtime.snap}]


def test_failure_in_unanswered_connect_refuses_the_rest_of_the_connection(nr) -> None:
    obj, ctx, _created, _rt = nr
    ScriptedSession.answers = {"connect": RuntimeError("identity")}
    assert obj.connect("[203.0.113.7]", socket.AF_INET, ("203.0.113.7", 4711)) == milter.NOREPLY
    ScriptedSession.answers = {"eom": EOM_OK}
    assert obj.hello("client.example") == milter.NOREPLY          # still not answered
    assert obj.envfrom("<a@example.org>") == milter.TEMPFAIL      # first answered step
    assert obj.envfrom("<a@example.org>") == milter.TEMPFAIL      # and every later one
    assert obj.eom() == milter.TEMPFAIL
    assert ("setreply", "451", "4.3.0", "Temporary local problem - please try later") in ctx.calls


def test_failure_in_unanswered_rcpt_tempfails_that_message_only(nr) -> None:
    obj, ctx, _created, _rt = nr
    obj.connect("[203.0.113.7]", socket.AF_INET, ("203.0.113.7", 4711))
    assert obj.envfrom("<a@example.org>") == milter.CONTINUE
    ScriptedSession.answers = {"rcpt": ValueError("boom"), "eom": EOM_OK}
    assert obj.envrcpt("<b@example.test>") == milter.NOREPLY
    assert obj.eom() == milter.TEMPFAIL
    ScriptedSession.answers = {"eom": EOM_OK}
    assert obj.envfrom("<a@example.org>") == milter.CONTINUE      # a new transaction starts clean
    assert obj.envrcpt("<c@example.test>") == milter.NOREPLY
    assert obj.eom() == milter.CONTINUE


def test_tcp_listener_always_gets_and_answers_data(nr) -> None:
    obj = MtaDriver(glue.AclMilter(glue.GlueConfig(nr[3], session_factory=ScriptedSession)),  # type: ignore[arg-type]
                    FakeCtx())
    obj.negotiate([milter.CURR_ACTS, 0x1FFFFF, 0, 0])
    assert not obj._protocol & (milter.P_NR_DATA | milter.P_NODATA)
    assert obj._protocol & milter.P_NR_CONN and obj._protocol & milter.P_NOHDRS


def test_abort_is_not_registered_and_transactions_end_lazily(m) -> None:
    """Postfix sends ABORT after every message; no abort callback means no Python call for it.
    A transaction that never reached EOM is still logged once: at the next HELO/MAIL/close."""
    obj, ctx = m
    lines = obj.test_lines
    ScriptedSession.answers = {"rcpt": Response(Action.REJECT, Reply(550, "5.7.1", ("no",)))}
    obj.envfrom("<a@example.org>")
    assert obj.envrcpt("<b@example.test>") == milter.REJECT
    assert lines == []                                   # RSET: nothing seen yet
    ScriptedSession.answers = {}
    obj.envfrom("<c@example.org>")                       # the next MAIL ends the refused one
    assert len(lines) == 1 and "decision=reject_at_rcpt" in lines[0]
    obj.hello("again.example")                           # EHLO after RSET: aborted, logged once
    assert len(lines) == 2 and "decision=aborted" in lines[1]
    obj.close()
    assert len(lines) == 2                               # nothing left to log


class RecordingLibmilter:
    """Stands in for pymilter's `milter` module in `register`: records what is installed."""

    def __init__(self) -> None:
        self.calls: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if not (name.startswith("set_") or name == "register") or not hasattr(milter, name):
            raise AttributeError(name)      # only what the real module has
        return lambda *a, **kw: self.calls.__setitem__(name, kw if name == "register" else a)


def test_register_leaves_abort_and_unknown_to_libmilter() -> None:
    lib = RecordingLibmilter()
    glue.register("t", glue.GlueConfig(FakeRuntime()), lib)  # type: ignore[arg-type]
    calls = lib.calls
    assert "set_abort_callback" not in calls
    assert calls["register"]["unknown"] is None
    assert "set_connect_callback" in calls and "set_eom_callback" in calls


def _connect_with_failing_helo(obj: glue.AclMilter) -> None:
    """A connection whose (unanswered) HELO raised; later callbacks answer normally."""
    obj.connect("[203.0.113.7]", socket.AF_INET, ("203.0.113.7", 4711))
    ScriptedSession.answers = {"helo": RuntimeError("helo broke")}
    assert obj.hello("client.example") == milter.NOREPLY
    ScriptedSession.answers = {}


def test_failure_in_unanswered_helo_is_not_forgotten_at_mail(nr) -> None:
    obj, _ctx, _created, _rt = nr
    _connect_with_failing_helo(obj)
    assert obj.envfrom("<a@example.org>") == milter.TEMPFAIL      # MAIL is answered: held here


def test_a_new_helo_is_judged_on_its_own_but_a_connect_failure_stays(nr) -> None:
    obj, _ctx, _created, _rt = nr
    _connect_with_failing_helo(obj)
    assert obj.hello("client.example") == milter.NOREPLY          # EHLO again (after STARTTLS)
    assert obj.envfrom("<a@example.org>") == milter.CONTINUE       # the failed HELO is gone
    ScriptedSession.answers = {"connect": RuntimeError("connect broke")}
    obj.connect("[203.0.113.7]", socket.AF_INET, ("203.0.113.7", 4711))
    ScriptedSession.answers = {}
    assert obj.hello("client.example") == milter.NOREPLY
    assert obj.envfrom("<a@example.org>") == milter.TEMPFAIL       # a new HELO does not clear it


def test_held_refusal_given_at_an_answered_rcpt_takes_that_recipient_out(nr) -> None:
    obj, _ctx, _created, runtime = nr
    runtime.snap.needs = Needs(frozenset({"rcpt"}), ())        # MAIL unanswered, RCPT answered
    obj.negotiate([milter.CURR_ACTS, 0x1FFFFF, 0, 0])
    obj.connect("[203.0.113.7]", socket.AF_INET, ("203.0.113.7", 4711))
    ScriptedSession.answers = {"mail": RuntimeError("mail broke")}
    assert obj.envfrom("<a@example.org>") == milter.NOREPLY
    ScriptedSession.answers = {}
    assert obj.envrcpt("<b@example.test>") == milter.TEMPFAIL
    assert obj.session.records == [("refused rcpt", Action.TEMPFAIL)]
    assert obj.last_refusal is not None and obj.last_refusal[0] == "mail"   # logged as tempfail_at_mail


def _tcp_milter(needs: Needs) -> glue.AclMilter:
    runtime = NeedsRuntime()
    runtime.snap.needs = needs
    ScriptedSession.answers = {}
    obj = MtaDriver(glue.AclMilter(glue.GlueConfig(runtime, session_factory=ScriptedSession)),  # type: ignore[arg-type]
                    FakeCtx())
    obj.negotiate([milter.CURR_ACTS, 0x1FFFFF, 0, 0])
    obj.connect("[203.0.113.7]", socket.AF_INET, ("203.0.113.7", 4711))
    return obj


def test_data_over_tcp_with_nothing_to_run_is_answered_without_the_session() -> None:
    """DATA is answered over TCP (no delayed-ACK stall); with no predata ACL the session
    is not called for it, but a refusal held from an unanswered step is still given there."""
    obj = _tcp_milter(Needs(frozenset(), (), frozenset({"mail"})))
    ScriptedSession.answers = {"data": RuntimeError("the session must not run at DATA")}
    obj.envfrom("<a@example.org>")
    assert obj.envrcpt("<b@example.test>") == milter.NOREPLY
    assert obj.data() == milter.CONTINUE
    ScriptedSession.answers = {"rcpt": Response(Action.TEMPFAIL, Reply(451, "4.7.1", ("later",))),
                               "data": RuntimeError("the session must not run at DATA")}
    obj.envfrom("<a@example.org>")
    assert obj.envrcpt("<b@example.test>") == milter.NOREPLY     # held ...
    assert obj.data() == milter.TEMPFAIL                          # ... and given at DATA
    assert ("setreply", "451", "4.7.1", "later") in obj._ctx.calls


def test_data_over_tcp_runs_the_session_when_the_policy_has_a_predata_acl() -> None:
    obj = _tcp_milter(Needs(frozenset(), (), frozenset({"predata"})))
    assert not obj._protocol & (milter.P_NR_DATA | milter.P_NODATA)
    obj.envfrom("<a@example.org>")
    assert obj.data() == milter.CONTINUE
    ScriptedSession.answers = {"data": RuntimeError("predata ACL failed")}   # the session ran
    assert obj.data() == milter.TEMPFAIL
