"""Operations: the log line's formats and fields, one internal-error reply everywhere, CLI help."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from aclmilter import cli
from aclmilter.dryrun import SessionSpec, simulate
from aclmilter.replies import INTERNAL_REJECT, INTERNAL_TEMPFAIL
from aclmilter.runtime import Runtime
from aclmilter.service import glue, logline
from aclmilter.service.reply import map_response
from aclmilter.session import Action, Response, Session, internal_response
from aclmilter.summary import result_word

PROXY_POLICY = Path(__file__).resolve().parents[2] / "policies" / "examples" / "proxy.yaml"


# ---- the log line ----------------------------------------------------------------------------
REC = {"queue_id": "4F1A2C3B1", "client": "mail.example.org[203.0.113.7]", "helo": "x y\"z",
       "sender": "<a@example.org>", "recipients": ["b@example.test", "c@example.test"],
       "decision": "reject_at_rcpt", "where": "p.yaml:12 (implicit deny at end of ACL rcpt)",
       "checks": {"spf": "fail", "dcc": "R", "scan": "scanned"}, "prx": "[192.0.2.2]:4000", "dry_run": True}


def test_logfmt_quotes_what_needs_it_and_keeps_a_fixed_order() -> None:
    line = logline.format_logfmt(REC)
    assert line == ('qid=4F1A2C3B1 client=mail.example.org[203.0.113.7] helo="x y\\"z" from=<a@example.org> '
                    'to=<b@example.test>,<c@example.test> decision=reject_at_rcpt '
                    'where="p.yaml:12 (implicit deny at end of ACL rcpt)" spf=fail dkim=- dmarc=- dcc=R '
                    'prx=[192.0.2.2]:4000 dry_run=yes')
    assert logline.quote("") == '""'
    assert logline.quote("a=b") == '"a=b"'
    assert logline.quote("line\nnext\x01") == '"line\\nnext\\u0001"'


def test_feature_fields_come_from_the_registry() -> None:
    """Every registry.record_field is on the line, in registration order, "-" when empty;
    a record key no feature registered is not."""
    from aclmilter.registry import TABLES
    names = list(TABLES.record_fields)
    assert "prx" in names
    out = logline.fields({**REC, "prx": "", "dry_run": False, "not_a_field": "x"})
    assert list(out)[-len(names):] == names and out["prx"] == "-" and "not_a_field" not in out


def test_json_log_line_carries_the_same_fields() -> None:
    out = json.loads(logline.format_json(REC))
    assert out["qid"] == "4F1A2C3B1" and out["to"] == ["b@example.test", "c@example.test"]
    assert out["where"] == REC["where"] and out["spf"] == "fail" and out["dcc"] == "R"
    assert out["checks"] == REC["checks"] and out["prx"] == "[192.0.2.2]:4000"


def test_decision_words_split_into_decision_and_stage() -> None:
    assert logline.split_decision("reject_at_rcpt") == ("reject", "rcpt")
    assert logline.split_decision("accept") == ("accept", "data")
    assert logline.split_decision("drop_at_mail") == ("drop", "mail")
    assert logline.split_decision("aborted") == ("aborted", "-")


def test_result_words() -> None:
    import enum

    class E(enum.Enum):
        PASS = "pass"

    class WithResult:
        result = E.PASS

    class WithLetter:
        letter = "G"
        status = E.PASS

    assert result_word(WithResult()) == "pass" and result_word(WithLetter()) == "G"
    assert result_word(None) == "-"


def test_proxied_session_logs_its_proxy_peer() -> None:
    rt = Runtime(PROXY_POLICY, monitor=False)
    rt.load()
    macros = {"{daemon_name}": "proxied", "{daemon_addr}": "198.51.100.25", "{daemon_port}": "25",
              "{client_port}": "4711"}
    report = simulate(rt, SessionSpec(client_ip="203.0.113.9", sender="a@example.org", rcpts=["b@example.org"],
                                      client_name="mail.example.net", macros=macros))
    assert report["final"]["prx"] == "192.0.2.2"
    assert "prx=192.0.2.2" in logline.format_logfmt(report["final"])


# ---- one internal-error reply ----------------------------------------------------------------
@pytest.mark.parametrize("mode,action,reply", [("tempfail", Action.TEMPFAIL, INTERNAL_TEMPFAIL),
                                               ("reject", Action.REJECT, INTERNAL_REJECT),
                                               ("accept", Action.CONTINUE, None)])
def test_session_and_glue_give_the_same_internal_error_reply(tmp_path: Path, mode: str, action: Action,
                                                             reply: object) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"settings: {{on_internal_error: {mode}}}\nacl: {{}}\n")
    rt = Runtime(path, monitor=False)
    rt.load()
    s = Session(rt)
    s.connect("[192.0.2.1]", "inet", "192.0.2.1", 1, {})
    s.txn = object()  # type: ignore[assignment]  - broken state: the session's guard answers
    from_session = s.eom({}).response
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        from_glue = glue.AclMilter(glue.GlueConfig(rt))._internal("eom")
    assert from_session == from_glue == internal_response(mode)
    assert (from_session.action, from_session.reply) == (action, reply)


def test_the_reply_mapper_falls_back_to_the_same_tempfail_text() -> None:
    mapped = map_response(Response(Action.TEMPFAIL, None))
    assert mapped.setreply == (str(INTERNAL_TEMPFAIL.code), INTERNAL_TEMPFAIL.ecode, *INTERNAL_TEMPFAIL.lines)


# ---- CLI -------------------------------------------------------------------------------------
def _parsers(parser: argparse.ArgumentParser, path: str = "aclmilter") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def test_every_option_of_every_command_has_help_text() -> None:
    missing = [f"{path} {a.dest}" for path, p in _parsers(cli.build_parser()) for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
               and not (a.help or "").strip()]
    assert missing == []


def test_where_names_the_statement_that_decided_when_data_has_no_acl(tmp_path: Path) -> None:
    # no data ACL (as policies/default.yaml): the RCPT accept decided, not "no ACL"
    path = tmp_path / "p.yaml"
    path.write_text("acl:\n  mail:\n    - accept\n  rcpt:\n    - warn: {set: {acl_m_x: y}}\n    - accept\n")
    rt = Runtime(path, monitor=False)
    rt.load()
    final = simulate(rt, SessionSpec(client_ip="192.0.2.1", sender="a@example.org", rcpts=["b@example.test"]))["final"]
    assert (final["decision"], final["where"]) == ("accept", f"{path}:6")
