"""service/held.py: the held-refusal state machine on its own (no milter, no session)."""

from __future__ import annotations

from aclmilter.actions import Reply
from aclmilter.service.held import GO_ON, Answer, HeldRefusals
from aclmilter.session import Action, HeldRefusal, Response

GO = Response(Action.CONTINUE)
TEMP = Response(Action.TEMPFAIL, Reply(451, "4.3.0", ("later",)))
REJ = Response(Action.REJECT, Reply(550, "5.7.1", ("no",)))


def where() -> str:
    return "p.yaml:3"


def test_nothing_held_goes_on_and_a_waited_refusal_is_the_steps_own() -> None:
    h = HeldRefusals()
    assert h.step("mail", GO, True, where) is GO_ON
    assert h.step("mail", REJ, True, where) == Answer("mail", REJ)
    assert h.current() is None                        # a refusal the MTA waited for is not held


def test_an_unwaited_refusal_is_held_and_given_at_the_next_waited_step() -> None:
    h = HeldRefusals()
    assert h.step("rcpt", TEMP, False, where) is None            # no reply: held
    assert h.current() == HeldRefusal("rcpt", TEMP, "p.yaml:3")
    assert h.step("predata", GO, True, where) == Answer("rcpt", TEMP, held=True)
    assert h.step("predata", REJ, True, where) == Answer("predata", REJ)   # its own refusal first


def test_the_first_refusal_of_a_transaction_wins_and_mail_forgets_it() -> None:
    h = HeldRefusals()
    h.step("rcpt", TEMP, False, where)
    h.step("rcpt", REJ, False, lambda: "p.yaml:9")
    assert h.current() == HeldRefusal("rcpt", TEMP, "p.yaml:3")
    h.new_transaction()
    assert h.step("mail", GO, True, where) is GO_ON


def test_connect_and_helo_refusals_outlive_mail_and_helo_is_judged_anew() -> None:
    h = HeldRefusals()
    h.step("helo", TEMP, False, where)
    h.new_transaction()
    assert h.step("mail", GO, True, where) == Answer("helo", TEMP, held=True)
    h.new_helo()
    assert h.step("mail", GO, True, where) is GO_ON
    h.step("connect", REJ, False, lambda: "internal error")
    h.step("connect", TEMP, False, where)                 # the first connect refusal stays
    h.step("helo", TEMP, False, where)
    h.new_helo()
    h.new_transaction()
    assert h.step("mail", GO, True, where) == Answer("connect", REJ, held=True)
    h.new_connection()
    assert h.current() is None


def test_connection_refusals_come_before_the_transactions() -> None:
    h = HeldRefusals()
    h.step("rcpt", TEMP, False, where)
    h.step("helo", REJ, False, where)
    assert h.current() is not None and h.current().stage == "helo"


def test_where_is_only_asked_when_something_is_held() -> None:
    asked: list[str] = []

    def counting() -> str:
        asked.append("x")
        return "p.yaml:1"
    h = HeldRefusals()
    h.step("rcpt", GO, False, counting)
    h.step("rcpt", GO, True, counting)
    assert asked == []
    h.step("rcpt", TEMP, False, counting)
    assert asked == ["x"]


def test_empty_follows_what_is_held() -> None:
    h = HeldRefusals()
    assert h.empty
    h.step("helo", TEMP, False, where)
    assert not h.empty
    h.new_transaction()
    assert not h.empty                      # a HELO refusal outlives MAIL
    h.new_helo()
    assert h.empty
    h.step("rcpt", TEMP, False, where)
    h.new_transaction()
    assert h.empty
