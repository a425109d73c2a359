"""`aclmilter test` (a simulation, as `aclmilter bh` is) leaves shared state alone.

Proved against real servers on loopback: a recording DNS server (which queries are sent),
a dccifd-protocol fake that greylists like `dccifd -G on` (a request without `grey-query`
starts an embargo), and Redis `MONITOR` (which commands reach Redis).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from aclmilter.runtime import Runtime
from aclmilter.session import Session
from tests.harness.fake_dccifd import FakeDccifd
from tests.harness.recording_dns import RecordingDns
from tests.harness.redis import RedisServer, redis_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

AC = str(Path(sys.executable).with_name("aclmilter"))
ROOT = Path(__file__).resolve().parents[2]
SENDER = "alice@sender.example"
MESSAGE = f"From: {SENDER}\r\nSubject: hello\r\n\r\nbody\r\n".encode()


def run_test(tmp_path: Path, policy: str, *extra: str) -> dict:
    """`aclmilter test --json` on one message; the parsed report."""
    pfile, mfile = tmp_path / "policy.yaml", tmp_path / "m.eml"
    pfile.write_text(policy)
    mfile.write_bytes(MESSAGE)
    cmd = [AC, "test", "--policy", str(pfile), "--client-ip", "192.0.2.25", "--helo", "mx.sender.example",
           "--from", SENDER, "--rcpt", "bob@ours.example", "--message", str(mfile), "--json", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def simulate_one(s: Session) -> None:
    """The same session through the service's path (a Session that is not a simulation)."""
    s.connect("mx.sender.example", "inet", "192.0.2.25", 4000, {})
    s.helo("mx.sender.example", {})
    s.mail(f"<{SENDER}>", [], {})
    s.rcpt("<bob@ours.example>", [], {})
    s.data({})
    s.header("From", SENDER)
    s.header("Subject", "hello")
    s.body(b"body\r\n")
    s.eom({"i": "Q1"})


def last_variables(report: dict) -> dict[str, str]:
    return report["stages"][-1]["variables"]


@pytest.fixture
def dns_server() -> Iterator[RecordingDns]:
    with RecordingDns({("sender.example", "TXT"): ['"v=spf1 -all"'],
                       ("_dmarc.sender.example", "TXT"): ['"v=DMARC1; p=reject"']}) as server:
        yield server


def with_dns(server: RecordingDns, rest: str) -> str:
    """A policy whose DNS goes to the recording server; `rest` follows its settings line."""
    return (f'settings:\n  dns: {{nameservers: ["{server.nameserver}"], timeout: 2, lifetime: 2}}\n'
            + rest)


def test_a_policy_without_checks_sends_no_dns_query(tmp_path: Path, dns_server: RecordingDns) -> None:
    policy = with_dns(dns_server, """acl:
  rcpt:
    - accept: {hosts: "192.0.2.0/24"}
  data:
    - accept
""")
    report = run_test(tmp_path, policy)
    assert report["steps"][-1]["action"] == "continue"
    # every variable is shown at every stage, and none of them ran a check
    variables = last_variables(report)
    assert variables["spf_result"] == "" and variables["dmarc_status"] == "" and variables["dcc_result"] == ""
    assert dns_server.queries == []


def test_only_the_checks_the_policy_uses_send_queries(tmp_path: Path, dns_server: RecordingDns) -> None:
    policy = with_dns(dns_server, """acl:
  mail:
    - warn: {spf: fail, log_message: "SPF fail"}
    - accept
""")
    report = run_test(tmp_path, policy)
    variables = last_variables(report)
    assert variables["spf_result"] == "fail"
    assert variables["dmarc_status"] == ""
    names = dns_server.names()
    assert "sender.example" in names
    # no DMARC (nor anything else) was looked up for variables the policy never used
    assert not [n for n in names if n.startswith("_dmarc.")]
    assert set(names) == {"sender.example"}


DCC_POLICY = """
settings:
  dccifd_address: "{address}"
  dccifd_options: "header"
acl:
  data:
    - warn: {{dcc: "*/defer_ok"}}
    - accept
"""


def test_dcc_in_a_simulation_asks_grey_query_and_starts_no_embargo(tmp_path: Path) -> None:
    with FakeDccifd.tcp("127.0.0.1") as fake:
        fake.greylisting = True
        report = run_test(tmp_path, DCC_POLICY.format(address=fake.address))
        [request] = fake.requests
        assert {"query", "grey-query"} <= set(request.options)
        assert fake.embargoed == set()
        assert last_variables(report)["dcc_result"] == "A"
        # the same message through the service's path (no simulation) does start one, so the
        # fake really enforces it: without grey-query the triple is now embargoed
        rt = Runtime(tmp_path / "policy.yaml", monitor=False)
        rt.load()
        simulate_one(Session(rt))
        assert "grey-query" not in fake.requests[-1].options
        assert fake.embargoed == {("192.0.2.25", SENDER, "bob@ours.example")}


def test_history_is_not_written_by_a_simulation(tmp_path: Path, dns_server: RecordingDns) -> None:
    history = tmp_path / "history"
    policy = with_dns(dns_server, f"""  dmarc_history_file: {history}
acl:
  data:
    - warn: {{dmarc_status: reject}}
    - accept
""")
    report = run_test(tmp_path, policy)
    assert last_variables(report)["dmarc_status"] == "reject"  # DMARC did run ...
    assert not history.exists()                                # ... and wrote no history line
    # the service's path writes one for the same message
    rt = Runtime(tmp_path / "policy.yaml", monitor=False)
    rt.load()
    simulate_one(Session(rt))
    assert "job Q1" in history.read_text()


class Monitor:
    """Redis MONITOR on a raw connection: every command Redis executes, scripts' included."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        self.buf = b""
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        assert self.buf.startswith(b"+OK"), self.buf
        self.buf = self.buf.split(b"\r\n", 1)[1]

    def commands(self, marker: str) -> list[str]:
        """Command words seen until the `ECHO marker` we send from another connection."""
        words: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            while b"\r\n" in self.buf:
                line, self.buf = self.buf.split(b"\r\n", 1)
                text = line.decode("utf-8", "replace")
                if marker in text:
                    return words
                # +1700000000.123456 [0 127.0.0.1:5555] "HSET" "key" ...
                if '"' in text:
                    words.append(text.split('"')[1].upper())
            self.buf += self.sock.recv(65536)
        raise AssertionError("MONITOR never showed the marker")

    def close(self) -> None:
        self.sock.close()


WRITES = {"SET", "HSET", "PEXPIRE", "EXPIRE", "SETBIT", "DEL", "INCR", "INCRBY", "SADD"}   # EVAL/EVALSHA run the script; its own commands show too

RATE_POLICY = """
settings:
  redis_servers: ["{spec}"]
acl:
  rcpt:
    - warn: {{ratelimit: "10 / 1h / per_rcpt / strict", log_message: "over"}}
    - warn: {{set: {{acl_m_seen: "${{lookup redis{{GET seen:$sender_address}}}}"}}}}
    - warn: {{set: {{acl_m_w: "${{lookup redis{{SET seen:$sender_address yes}}}}"}}}}
    - accept
"""


def test_ratelimit_and_redis_writes_need_update(tmp_path: Path, redis_server: RedisServer) -> None:  # noqa: F811 - the fixture
    policy = RATE_POLICY.format(spec=redis_server.spec)
    monitor = Monitor(redis_server.port)
    control = redis_server.client()
    try:
        report = run_test(tmp_path, policy)
        control.echo("end-of-dry-run")
        seen = monitor.commands("end-of-dry-run")
        # the rate is computed (read only) and the GET is sent; nothing is written
        assert "HMGET" in seen and "GET" in seen
        assert not WRITES & set(seen), seen
        assert float(last_variables(report)["sender_rate"]) == 1.0
        assert control.keys("*") == []

        run_test(tmp_path, policy, "--update")
        control.echo("end-of-update")
        seen = monitor.commands("end-of-update")
        assert {"HSET", "PEXPIRE", "SET"} <= set(seen), seen
        assert control.get(f"seen:{SENDER}") == "yes"
    finally:
        monitor.close()
