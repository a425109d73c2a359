"""Pure parts of the service: reply mapping, edit planning, socket specs, metrics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import milter  # noqa: E402 - the C extension shipped with pymilter

from aclmilter.actions import (Edits, HeaderAdd, HeaderPosition, RecipientAdd,  # noqa: E402
                               RecipientDelete, Reply)
from aclmilter.service import edits as E  # noqa: E402
from aclmilter.service import socketspec  # noqa: E402
from aclmilter.service.metrics import Metrics, parse_addr  # noqa: E402
from aclmilter.service.reply import map_response  # noqa: E402
from aclmilter.session import Action, Response  # noqa: E402


# ---- replies ---------------------------------------------------------------------------------
def test_continue_and_accept_before_eom_continue() -> None:
    assert map_response(Response(Action.CONTINUE)).rc == milter.CONTINUE
    # a milter ACCEPT at RCPT would skip the rest of the message's ACLs
    assert map_response(Response(Action.ACCEPT)).rc == milter.CONTINUE
    assert map_response(Response(Action.ACCEPT), at_eom=True).rc == milter.ACCEPT


def test_reject_multiline_reply_and_percent_escaped() -> None:
    r = map_response(Response(Action.REJECT, Reply(550, "5.7.1", ("line one 100%", "line two"))))
    assert r.rc == milter.REJECT
    assert r.setreply == ("550", "5.7.1", "line one 100%%", "line two")


def test_reply_class_forced_to_action() -> None:
    r = map_response(Response(Action.TEMPFAIL, Reply(550, "5.7.1", ("no",))))
    assert r.rc == milter.TEMPFAIL and r.setreply[:2] == ("451", "4.7.1")
    r = map_response(Response(Action.TEMPFAIL, None))
    assert r.setreply[0] == "451"


def test_drop_maps_to_hangup_codes() -> None:
    r = map_response(Response(Action.REJECT, Reply(550, "5.7.1", ("go away",)), drop=True))
    assert r.rc == milter.REJECT and r.setreply[:3] == ("521", "5.7.1", "go away")
    r = map_response(Response(Action.TEMPFAIL, Reply(451, "4.7.1", ("later",)), drop=True))
    assert r.rc == milter.TEMPFAIL and r.setreply[:2] == ("421", "4.7.0")


def test_discard() -> None:
    assert map_response(Response(Action.DISCARD), at_eom=True).rc == milter.DISCARD


# ---- edits -----------------------------------------------------------------------------------
HEADERS = [("Received", "from a"), ("Received", "from b"), ("From", "x"), ("Subject", "y")]


def test_edit_order_is_fixed() -> None:
    ed = Edits()
    ed.add_header(HeaderAdd("X-End", "1"))
    ed.add_header(HeaderAdd("X-Top", "2", HeaderPosition.START))
    ed.rcpt_deletes.append(RecipientDelete("<gone@example.test>"))
    ed.rcpt_adds.append(RecipientAdd("new@example.test", ("NOTIFY=NEVER",)))
    ops = E.plan(ed, [("Subject", 1, "")], "held", HEADERS, mta_hides_own_received=True)
    assert [o.method for o in ops] == ["delrcpt", "addrcpt", "chgheader", "addheader", "addheader", "quarantine"]
    assert ops[1].args == ("<new@example.test>", ["NOTIFY=NEVER"])
    assert ops[3].args == ("X-Top", "2", 0)
    assert ops[4].args == ("X-End", "1", -1)


def test_after_received_index_counts_postfix_hidden_received() -> None:
    assert E.header_index(HeaderPosition.AFTER_RECEIVED, HEADERS, True) == 3
    assert E.header_index(HeaderPosition.AFTER_RECEIVED, HEADERS, False) == 2
    assert E.header_index(HeaderPosition.AFTER_RECEIVED, [("From", "x")], True) == 1
    assert E.header_index(HeaderPosition.START_RFC, HEADERS, True) == 3


def test_inserts_keep_policy_order() -> None:
    ed = Edits()
    ed.add_header(HeaderAdd("X-A", "1", HeaderPosition.START))
    ed.add_header(HeaderAdd("X-B", "2", HeaderPosition.START))
    ed.add_header(HeaderAdd("X-C", "3", HeaderPosition.AFTER_RECEIVED))
    ops = E.plan(ed, [], None, HEADERS, True)
    # highest index first, and X-B before X-A so that X-A ends on top
    assert [o.args[0] for o in ops] == ["X-C", "X-B", "X-A"]


def test_quarantine_reason_truncated() -> None:
    ops = E.plan(Edits(), [], "r" * 300, [], True)
    assert ops == [E.Op("quarantine", ("r" * 100,))]


# ---- socket specs ----------------------------------------------------------------------------
@pytest.mark.parametrize("text,lib", [
    ("unix:/run/a.sock", "unix:/run/a.sock"), ("local:/x", "unix:/x"), ("/x", "unix:/x"),
    ("inet:8890@127.0.0.1", "inet:8890@127.0.0.1"), ("inet6:8890@[::1]", "inet6:8890@::1"),
    ("inet:8890", "inet:8890"),
])
def test_socket_specs(text: str, lib: str) -> None:
    assert socketspec.parse(text).libmilter == lib


@pytest.mark.parametrize("bad", ["unix:rel", "inet:99999@h", "tcp:1@h", "inet:@h", ""])
def test_bad_socket_specs(bad: str) -> None:
    with pytest.raises(ValueError):
        socketspec.parse(bad)


def test_socket_mode() -> None:
    assert socketspec.parse_mode("0660") == 0o660
    with pytest.raises(ValueError):
        socketspec.parse_mode("1777")


# ---- metrics ---------------------------------------------------------------------------------
def test_metrics_interface() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.message("accept", "data")
    m.message("reject", "rcpt")
    m.dependency("dns", True, 0.01)
    m.dependency("dccifd", False, 0.5)
    m.statement_hit("policy.yaml:12")
    m.check_result("spf", "pass")
    m.check_latency("spf", 0.01)
    m.callback_latency("rcpt", 0.002)
    m.dns_timeout()
    m.internal_error("eom")
    assert reg.get_sample_value("aclmilter_messages_total", {"decision": "accept", "stage": "data"}) == 1
    assert reg.get_sample_value("aclmilter_messages_total", {"decision": "reject", "stage": "rcpt"}) == 1
    assert reg.get_sample_value("aclmilter_dependency_up", {"dependency": "dns"}) == 1
    assert reg.get_sample_value("aclmilter_dependency_up", {"dependency": "dccifd"}) == 0
    assert reg.get_sample_value("aclmilter_dependency_errors_total", {"dependency": "dccifd"}) == 1
    assert reg.get_sample_value("aclmilter_dependency_errors_total", {"dependency": "dns"}) is None
    assert reg.get_sample_value("aclmilter_dependency_seconds_count", {"dependency": "dns"}) == 1
    assert reg.get_sample_value("aclmilter_statement_hits_total", {"where": "policy.yaml:12"}) == 1
    assert reg.get_sample_value("aclmilter_check_results_total", {"check": "spf", "result": "pass"}) == 1
    assert reg.get_sample_value("aclmilter_dns_timeouts_total") == 1
    assert reg.get_sample_value("aclmilter_callback_seconds_count", {"stage": "rcpt"}) == 1


def test_metrics_addr() -> None:
    assert parse_addr("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_addr("[::1]:9108") == ("::1", 9108)
    assert parse_addr("9108") == ("127.0.0.1", 9108)
    with pytest.raises(ValueError):
        parse_addr("nohost")


@given(st.text())
def test_clean_line_leaves_no_control_character_but_tab(text: str) -> None:
    from aclmilter.actions import clean_line
    out = clean_line(text)
    assert len(out) == len(text)
    for before, after in zip(text, out, strict=True):
        control = (ord(before) < 32 and before != "\t") or before == "\x7f"
        assert after == (" " if control else before)
