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



def test_a_long_dialogue_is_one_process_one_policy_load_one_session(tmp_path: Path) -> None:
    # Issue 23: start-up (imports, policy load) is paid once per dialogue, not per transaction.
    # One `aclmilter bh` process replays 300 transactions: the queue ids count on (one Session;
    # a process or session per transaction would restart at TESTQID1) and the connection
    # variable counts every MAIL (one connection state across all of them).
    import subprocess
    import sys
    p = tmp_path / "p.yaml"
    p.write_text("settings: {primary_hostname: mx.test}\n"
                 "acl:\n  mail:\n    - accept: {set: \"acl_c_n = ${eval:$acl_c_n+1}\"}\n"
                 "  rcpt:\n    - deny: {condition: \"${if >{$acl_c_n}{300}}\", message: \"MAIL number $acl_c_n\"}\n"
                 "    - accept\n")
    n = 300
    dialogue = ("EHLO c.test\n" + "MAIL FROM:<a@s.test>\nRCPT TO:<u@x.test>\nDATA\nSubject: x\n\nhi\n.\n" * n
                + "MAIL FROM:<a@s.test>\nRCPT TO:<u@x.test>\nQUIT\n")
    proc = subprocess.run([sys.executable, "-m", "aclmilter.cli", "bh", "--policy", str(p), "192.0.2.1"],
                          input=dialogue, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert [line for line in lines if "queued as" in line] == [
        f"250 2.0.0 Ok: queued as TESTQID{i}" for i in range(1, n + 1)]
    assert lines[-2:] == [f"550 5.7.1 MAIL number {n + 1}", "221 2.0.0 Bye"]
