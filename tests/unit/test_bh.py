"""`aclmilter bh` without an MTA: dialogue handling, the two views, state across transactions.
(Agreement with real Exim and real Postfix: tests/integration/test_exim_oracle.py and
test_exim_postfix.py.)"""

from __future__ import annotations

from pathlib import Path

from aclmilter.bh import Dialogue, Mta, split_address
from aclmilter.runtime import Runtime

POLICY = """\
settings: {primary_hostname: mx.test}
acl:
  mail:
    - accept: {set: "acl_c_n = ${eval:0$acl_c_n+1}"}
  rcpt:
    - deny: {condition: "${if >{$acl_c_n}{1}}", message: "one message per connection ($acl_c_n)"}
    - accept
"""


def run(tmp_path: Path, dialogue: str, mta: Mta = Mta.POSTFIX, debug: bool = False) -> Dialogue:
    p = tmp_path / "p.yaml"
    p.write_text(POLICY)
    rt = Runtime(str(p), monitor=False)
    rt.load()
    d = Dialogue(rt, "192.0.2.1", mta, debug=debug)
    d.run(dialogue.split("\n"))
    return d


def test_split_address() -> None:
    assert split_address("FROM:<a@b> SIZE=10 BODY=8BITMIME", "FROM") == ("<a@b>", ["SIZE=10", "BODY=8BITMIME"])
    assert split_address("to: <c@d>", "TO") == ("<c@d>", [])
    assert split_address("FROM:<>", "FROM") == ("<>", [])
    assert split_address("<a@b>", "FROM") is None


def test_helo_is_optional_and_connection_state_survives_transactions(tmp_path: Path) -> None:
    d = run(tmp_path, "MAIL FROM:<a@s.test>\nRCPT TO:<u@x.test>\nDATA\nSubject: x\n\nhi\n.\n"
                      "MAIL FROM:<a@s.test>\nRCPT TO:<u@x.test>\nQUIT")
    assert d.replies == ["220 mx.test ESMTP", "250 2.1.0 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>",
                         "250 2.0.0 Ok: queued as TESTQID1", "250 2.1.0 Ok",
                         "550 5.7.1 one message per connection (2)", "221 2.0.0 Bye"]


def test_exim_view_wants_helo_and_debug_traces_file_line(tmp_path: Path) -> None:
    d = run(tmp_path, "MAIL FROM:<a@s.test>\nHELO c.test\nMAIL FROM:<a@s.test>\nQUIT", Mta.EXIM, debug=True)
    assert d.replies == ["220 mx.test ESMTP", "503 HELO or EHLO required", "250 mx.test Hello c.test [192.0.2.1]",
                         "250 OK", "221 mx.test closing connection"]
    assert any(line.startswith(f"   {tmp_path}/p.yaml:4: ") for line in d.trace), d.trace
