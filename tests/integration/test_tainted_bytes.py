"""8-bit envelope bytes that are not UTF-8 never fail open and never defer (issue 24 point 5).

HELO, sender and recipients reach the policy decoded with surrogateescape; Redis gets the
original bytes; a `warn` stays a warn; an undecodable HELO runs the HELO ACL. Tested in
process, over the milter protocol and through a real Postfix (smtputf8_enable no and yes).
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from aclmilter.runtime import Runtime
from aclmilter.session import Action, Session
from tests.harness.aclmilterd import AclMilterd
from tests.harness.milterclient import MilterClient
from tests.harness.postfix import Postfix, world_traversable_dir
from tests.harness.redis import RedisServer
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

POLICY = """\
settings:
  primary_hostname: mx.test.example
  redis_servers: ["{redis}"]
domainlist:
  local: "test.example : ${{lookup redis{{GET localdomain:$domain}}{{$value}}{{}}}}"
acl:
  helo:
    - deny:
        condition: "${{if match{{$sender_helo_name}}{{^b[^.]?d}}}}"
        message: "550 5.7.1 bad helo $sender_helo_name"
    - warn:
        set: {{acl_c_h: "${{lookup redis{{SET helo:$sender_helo_name 1}}{{$value}}{{}}}}"}}
    - accept
  rcpt:
    - warn:
        set: {{acl_m_x: "${{lookup redis{{SET seen:$sender_address 1}}{{$value}}{{}}}}"}}
    - warn:
        domains: "+local"
        set: {{acl_m_local: "yes"}}
    - warn:
        ratelimit: "100 / 1h / per_rcpt / $sender_address"
    - accept
  data:
    - warn:
        add_header: "X-Helo: $sender_helo_name"
    - accept
"""


@pytest.fixture(scope="module")
def workdir():
    d = world_traversable_dir("aclmilter-taint-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def redis(workdir: Path):
    server = RedisServer(workdir / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def policy(workdir: Path, redis: RedisServer) -> Path:
    p = workdir / "policy.yaml"
    p.write_text(POLICY.format(redis=redis.spec))
    return p


def raw_keys(redis: RedisServer) -> set[bytes]:
    import redis as redis_py
    c = redis_py.Redis(host="127.0.0.1", port=redis.port, socket_timeout=5)
    try:
        return set(c.keys("*"))
    finally:
        c.close()


def wait_key(redis: RedisServer, key: bytes, timeout: float = 15.0) -> bool:
    """True once `key` exists (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if key in raw_keys(redis):
            return True
        time.sleep(0.05)
    return False


def flush(redis: RedisServer) -> None:
    redis.client().flushdb()


def test_session_keeps_bytes_and_warns_stay_warns(policy: Path, redis: RedisServer, caplog) -> None:
    flush(redis)
    rt = Runtime(str(policy))
    rt.load()
    s = Session(rt, listen_port="")
    assert s.connect("h", "inet", "203.0.113.7", 4711, {}).action is Action.CONTINUE
    helo = b"ok\xff.example".decode("utf-8", "surrogateescape")
    assert s.helo(helo, {}).action is Action.CONTINUE
    assert s.mail(b"<a\xff@ex\xfeample.org>".decode("utf-8", "surrogateescape"), (), {}).action is Action.CONTINUE
    for rcpt in (b"<b\xfe@t\xffest.example>", b"<c@test.example>"):
        assert s.rcpt(rcpt.decode("utf-8", "surrogateescape"), (), {}).action is Action.CONTINUE
    assert "internal error" not in caplog.text
    keys = raw_keys(redis)
    assert b"helo:ok\xff.example" in keys
    assert b"seen:a\xff@ex\xfeample.org" in keys
    bad = b"bad\xff.example".decode("utf-8", "surrogateescape")
    refused = Session(rt, listen_port="")
    refused.connect("h", "inet", "203.0.113.7", 4711, {})
    assert refused.helo(bad, {}).action is Action.REJECT


def test_undecodable_helo_runs_the_helo_acl_over_the_milter_protocol(policy: Path, redis: RedisServer,
                                                                       workdir: Path) -> None:
    flush(redis)
    (workdir / "m").mkdir(mode=0o755, exist_ok=True)
    with AclMilterd(policy, "unix", workdir=workdir / "m") as d:
        with MilterClient(d.client_spec) as mc:
            mc.connect("[203.0.113.7]", "4", 4711, "203.0.113.7", {"v": "Postfix 3.7"})
            mc.helo(b"bad\xff.example")
            ans = mc.message("<a@example.org>", ["<b@test.example>"], [("Subject", "x")], b"x\r\n")
            # pymilter answered the HELO itself; the refusal comes at the next step waited for
            assert ans.refused and ans.code == 550 and "bad helo bad\\xff.example" in ans.reply, ans
        with MilterClient(d.client_spec) as mc:
            mc.connect("[203.0.113.7]", "4", 4711, "203.0.113.7", {"v": "Postfix 3.7"})
            mc.helo(b"ok\xff.example")
            ans = mc.message(b"<a\xff@example.org>", [b"<b\xfe@test.example>"], [("Subject", "x")], b"x\r\n")
            assert ans.action in ("continue", "accept"), ans
            assert dict(ans.headers_added())["X-Helo"] == "ok\\xff.example"
        with MilterClient(d.client_spec) as mc:
            # a second HELO after a transaction the client abandoned (RSET): still judged
            mc.connect("[203.0.113.7]", "4", 4711, "203.0.113.7", {"v": "Postfix 3.7"})
            mc.helo("ok.example")
            mc.mail("<a@example.org>")
            mc.rcpt("<b@test.example>", macros={"{rcpt_addr}": "b@test.example"})
            mc.abort()
            mc.helo(b"bad\xfe.example")
            ans = mc.message("<a@example.org>", ["<b@test.example>"], [("Subject", "x")], b"x\r\n",
                             macros={"rcpt": {"{rcpt_addr}": "b@test.example"}})
            assert ans.refused and "bad helo bad\\xfe.example" in ans.reply, ans
        assert "internal error" not in d.log()
        assert "helo value is not UTF-8" in d.log()
    assert wait_key(redis, b"seen:a\xff@example.org")


def smtp_raw(port: int, lines: list[bytes], timeout: float = 30.0) -> list[tuple[int, bytes]]:
    """Send SMTP command lines one at a time (bytes as given); the reply to each, banner first.

    The line after a DATA that got no 354 is left out. Stops after a 421 or when the server
    closes the connection (reply code 0).
    """
    replies: list[tuple[int, bytes]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")

        def reply() -> tuple[int, bytes]:
            text = b""
            for _ in range(100):
                line = f.readline()
                if not line:
                    return (0, text)
                text += line
                if line[3:4] != b"-":
                    return (int(line[:3]), text)
            raise RuntimeError("endless reply")

        replies.append(reply())
        previous = b""
        for cmd in lines:
            if previous == b"DATA" and replies[-1][0] != 354:
                previous = b""          # DATA was refused: the message text is not sent
                continue
            try:
                s.sendall(cmd + b"\r\n")
                r = reply()
            except ConnectionResetError:
                r = (0, b"connection reset")
            replies.append(r)
            previous = cmd
            if r[0] in (0, 421):
                break
    return replies


@pytest.mark.parametrize("smtputf8", ["no", "yes"])
def test_through_postfix(smtputf8: str, policy: Path, redis: RedisServer, workdir: Path) -> None:
    flush(redis)
    root = workdir / f"pf-{smtputf8}"
    root.mkdir(mode=0o755)
    (root / "d").mkdir(mode=0o755)
    with Sink() as sink, AclMilterd(policy, "unix", workdir=root / "d") as d:
        pf = Postfix(relay_port=sink.port, milter=d.postfix_spec, root=root / "pf",
                     extra_main={"smtputf8_enable": smtputf8})
        pf.start()
        try:
            # 1. an undecodable HELO that the HELO ACL refuses: never accepted (fail closed)
            r = smtp_raw(pf.port, [b"EHLO bad\xff.example", b"MAIL FROM:<a@example.org>",
                                   b"RCPT TO:<bob@example.test>", b"DATA", b"Subject: x\r\n\r\nx\r\n.",
                                   b"QUIT"])
            if smtputf8 == "no":
                # Postfix passes the bytes on; the milter's HELO ACL refuses at the next answer
                assert not any(c == 250 and b"queued as" in t for c, t in r), r
                assert any(c == 550 and b"bad helo" in t for c, t in r), r
            else:
                # Postfix refuses the command itself: no HELO name reaches anyone
                assert r[1][0] == 500 and b"UTF-8" in r[1][1], r
                assert "bad\\xff" not in d.log()
            # 2. an 8-bit sender and HELO that the policy only warns about: RCPT is not deferred
            r = smtp_raw(pf.port, [b"EHLO ok\xff.example", b"MAIL FROM:<a\xff@example.org>",
                                   b"RCPT TO:<bob@example.test>", b"DATA",
                                   b"From: <a@example.org>\r\nSubject: y\r\n\r\ny\r\n.", b"QUIT"])
            assert not any(c == 451 for c, _ in r), r
            if smtputf8 == "no":
                assert r[3][0] == 250 and any(c == 250 and b"queued as" in t for c, t in r), r
                # Postfix sends no-reply steps (RCPT: only warns) with the next step it waits
                # for; the key shows the milter's RCPT ACL ran on the original bytes
                assert wait_key(redis, b"seen:a\xff@example.org"), d.log()[-2000:]
            # 3. an undecodable HELO on a clean envelope is delivered with the HELO ACL's header
            r = smtp_raw(pf.port, [b"EHLO ok\xfe.example", b"MAIL FROM:<a@example.org>",
                                   b"RCPT TO:<carol@example.test>", b"DATA",
                                   b"From: <a@example.org>\r\nSubject: x\r\n\r\nx\r\n.", b"QUIT"])
            if smtputf8 == "no":
                assert any(c == 250 and b"queued as" in t for c, t in r), r
                got = sink.wait_for_rcpt("carol@example.test")
                assert got.header("X-Helo") == "ok\\xfe.example"
            else:
                assert not any(c == 451 for c, _ in r), r
            assert "internal error" not in d.log()
        finally:
            pf.stop()
