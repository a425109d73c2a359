"""$message_smtputf8 and the DSN variables from the MAIL/RCPT parameters a milter receives."""

from __future__ import annotations

from pathlib import Path

from aclmilter.conditions.esmtp import param, xtext_decode
from aclmilter.session import Action

from .test_session import make_session

POLICY = """
acl:
  mail:
    - accept: {set: {acl_m_mail: "utf8=$message_smtputf8 ret=$dsn_ret envid=$dsn_envid"}}
  rcpt:
    - deny: {message: "550 5.7.1 [$acl_m_mail] notify=$dsn_notify orcpt=$dsn_orcpt"}
"""


def test_variables_from_mail_and_each_recipient(tmp_path: Path) -> None:
    s = make_session(tmp_path, POLICY)
    s.connect("[192.0.2.1]", "inet", "192.0.2.1", 4000, {})
    s.helo("client.example", {})
    s.mail("<jösé@example.com>", ["SIZE=100", "SMTPUTF8", "RET=hdrs", "ENVID=QQ+2B314"], {})
    r = s.rcpt("<a@example.org>", ["NOTIFY=success,failure", "ORCPT=rfc822;a+2Bb@example.org"], {})
    assert r.action is Action.REJECT
    assert r.reply.text().endswith("[utf8=yes ret=HDRS envid=QQ+314] notify=SUCCESS,FAILURE orcpt=rfc822;a+b@example.org")
    r = s.rcpt("<b@example.org>", [], {})
    assert r.reply.text().endswith("[utf8=yes ret=HDRS envid=QQ+314] notify= orcpt=")
    s.abort()
    s.mail("<x@example.com>", [], {})
    r = s.rcpt("<c@example.org>", ["NOTIFY=NEVER"], {})
    assert r.reply.text().endswith("[utf8=no ret= envid=] notify=NEVER orcpt=")


def test_xtext_and_parameter_parsing() -> None:
    assert xtext_decode("a+2Bb+3Dc") == "a+b=c"
    assert xtext_decode("bad+ZZ+0D+0A") == "bad+ZZ??"     # CR/LF never come out of a decode
    assert xtext_decode("caf+C3+A9") == "café" and xtext_decode("x+FF") == "x\ufffd"
    assert param(("size=1", "smtputf8"), "SMTPUTF8") == ""
    assert param(("SIZE=1",), "RET") is None
    assert param(("ret=FULL",), "RET") == "FULL"
