"""Milter-protocol edge cases Postfix never sends, against `aclmilter serve` (one daemon).

Driven by tests.harness.milterclient (honours the NO/NR flags aclmilter negotiates).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import grp
import urllib.request
from pathlib import Path

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.milterclient import MilterClient
from tests.harness.postfix import world_traversable_dir
from tests.harness.procs import free_port

pytestmark = pytest.mark.integration

POLICY = Path(__file__).resolve().parent.parent / "fixtures" / "service-protocol.yaml"
CONNECT_MACROS = {"j": "mx.test.example", "v": "Postfix 3.7", "{daemon_name}": "mx",
                  "{client_addr}": "203.0.113.7", "{client_port}": "4711"}
HDRS = [("From", "<a@example.org>"), ("To", "<b@example.test>"), ("Subject", "hi")]


@pytest.fixture(scope="module")
def workdir():
    d = world_traversable_dir("aclmilter-proto-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def daemon(workdir: Path, metrics_port: int):
    with AclMilterd(POLICY, "unix", workdir=workdir, metrics_port=metrics_port) as d:
        yield d


def client(d: AclMilterd) -> MilterClient:
    mc = MilterClient(d.client_spec).open()
    assert mc.connect("[203.0.113.7]", "4", 4711, "203.0.113.7", CONNECT_MACROS).action == "continue"
    assert mc.helo("client.example.org").action == "continue"
    return mc


def test_negotiation_requests_macros_and_noreply_steps(daemon: AclMilterd) -> None:
    with MilterClient(daemon.client_spec) as mc:
        from miltertest import constants as C
        assert mc.protocol & C.SMFIP_NR_HDR and mc.protocol & C.SMFIP_NR_BODY and mc.protocol & C.SMFIP_NOEOH
        assert not mc.protocol & (C.SMFIP_NOHDRS | C.SMFIP_NOBODY | C.SMFIP_NORCPT)
        connect_list = mc.symlists[C.SMFIM_CONNECT].split()
        for name in ("{client_addr}", "{client_port}", "{client_name}", "{client_ptr}", "{daemon_name}",
                     "{daemon_addr}", "{daemon_port}", "j", "v"):
            assert name in connect_list
        assert "{auth_authen}" in mc.symlists[C.SMFIM_ENVFROM]
        assert "{cipher}" in mc.symlists[C.SMFIM_HELO] and "{tls_version}" in mc.symlists[C.SMFIM_HELO]
        # `i` from RCPT on comes from the MTA's defaults: no setsymlist there (GIL hand-overs)
        assert not any(stage in mc.symlists for stage in (C.SMFIM_ENVRCPT, C.SMFIM_DATA, C.SMFIM_EOH,
                                                         C.SMFIM_EOM))


def test_unix_socket_mode_and_group(daemon: AclMilterd) -> None:
    st = os.stat(daemon.sock_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_gid == grp.getgrnam("postfix").gr_gid


def test_rcpt_reject_reply_and_headers_added(daemon: AclMilterd) -> None:
    mc = client(daemon)
    try:
        assert mc.mail("<a@example.org>").action == "continue"
        ans = mc.rcpt("<rcptdeny@example.test>")
        assert ans.action == "reply" and ans.reply == "550 5.7.1 recipient refused"
        assert mc.rcpt("<b@example.test>").action == "continue"
        mc.data(macros={"i": "PROTO1"})
        mc.headers(HDRS)
        mc.eoh()
        mc.body(b"hello\r\n")
        eom = mc.eom(macros={"i": "PROTO1"})
        assert eom.action in ("continue", "accept")
        added = dict(eom.headers_added())
        assert "helo=client.example.org ip=203.0.113.7" in added["X-Seen"]
    finally:
        mc.close()
    daemon.wait_log(r"qid=PROTO1 .*from=<a@example.org> to=<b@example.test>")


def test_abort_mid_body_then_next_transaction(daemon: AclMilterd) -> None:
    mc = client(daemon)
    try:
        mc.mail("<a@example.org>")
        mc.rcpt("<b@example.test>")
        mc.data()
        mc.headers([("Subject", "datadeny")])
        mc.eoh()
        mc.body(b"partial body\r\n")
        mc.abort()
        # second transaction on the same connection: a fresh transaction, nothing inherited
        assert mc.mail("<c@example.org>").action == "continue"
        mc.rcpt("<d@example.test>")
        mc.data()
        mc.headers([("Subject", "clean")])
        mc.eoh()
        mc.body(b"x\r\n")
        eom = mc.eom()
        assert eom.action in ("continue", "accept")
        assert "size=" in dict(eom.headers_added())["X-Seen"]
        # and a third whose data ACL refuses it
        mc.abort()
        ans = mc.message("<e@example.org>", ["<f@example.test>"], [("Subject", "datadeny")], b"y\r\n")
        assert ans.action == "reply" and ans.reply.startswith("550 5.7.1 message refused")
    finally:
        mc.close()


def test_second_connect_on_same_milter_connection(daemon: AclMilterd) -> None:
    mc = client(daemon)
    try:
        mc.mail("<a@example.org>")
        mc.rcpt("<b@example.test>")
        mc.abort()
        # after XCLIENT the MTA ends the SMTP session towards the milter (QUIT_NC: "a new
        # connection follows") and sends a new CONNECT with the new client data
        mc.quit_nc()
        new = dict(CONNECT_MACROS, **{"{client_addr}": "198.51.100.9"})
        assert mc.connect("[198.51.100.9]", "4", 1234, "198.51.100.9", new).action == "continue"
        mc.helo("other.example.net")
        eom = mc.message("<x@example.net>", ["<y@example.test>"], HDRS, b"z\r\n")
        seen = dict(eom.headers_added())["X-Seen"]
        assert "ip=198.51.100.9" in seen and "helo=other.example.net" in seen
    finally:
        mc.close()


def _one(d: AclMilterd, headers: list, body: bytes = b"x\r\n") -> str:
    mc = client(d)
    try:
        ans = mc.message("<a@example.org>", ["<b@example.test>"], headers, body)
        return ans.action if ans.action != "reply" else ans.reply
    finally:
        mc.close()


def test_8bit_header_values_and_body(daemon: AclMilterd) -> None:
    hdrs = [(b"Subject", b"caf\xc3\xa9 \xe9"), (b"X-Bad", b"\xc3\x28 invalid utf8"), (b"X-Long", b"a" * 20000)]
    assert _one(daemon, hdrs, bytes(range(256)) * 8 + b"\r\n") in ("continue", "accept")


def test_undecodable_header_name_is_skipped(daemon: AclMilterd) -> None:
    # pymilter cannot decode the name; the callback is skipped and the message goes on. The
    # RCPT macros are sent as every MTA sends them: {rcpt_addr} tells a header from a HELO
    mc = client(daemon)
    try:
        ans = mc.message("<a@example.org>", ["<b@example.test>"], [(b"X-\xff\xfe-Bad", b"v")] + HDRS,
                         b"x\r\n", macros={"rcpt": {"{rcpt_addr}": "b@example.test"}})
        assert ans.action in ("continue", "accept")
    finally:
        mc.close()


def test_header_name_with_space_gets_an_answer(daemon: AclMilterd) -> None:
    # not a valid field name: whatever a check makes of it, the milter answers (continue,
    # or on_internal_error's 451) and keeps serving
    answer = _one(daemon, [(b"With Space", b"v")] + HDRS)
    assert answer in ("continue", "accept") or answer.startswith("451 ")
    assert _one(daemon, HDRS) in ("continue", "accept")


def test_empty_header_name_closes_only_that_connection(daemon: AclMilterd) -> None:
    # libmilter itself treats an empty name as a protocol error and hangs up
    with pytest.raises((ConnectionError, socket.timeout, OSError)):
        _one(daemon, [(b"", b"empty name")])
    assert _one(daemon, HDRS) in ("continue", "accept")


def test_huge_body_spools(daemon: AclMilterd) -> None:
    body = (b"0123456789" * 7 + b"\r\n") * 80000        # ~5.7 MB, far above the 4 KiB threshold
    mc = client(daemon)
    try:
        eom = mc.message("<a@example.org>", ["<b@example.test>"], HDRS, body)
        assert eom.action in ("continue", "accept")
        assert "size=" in dict(eom.headers_added())["X-Seen"]
    finally:
        mc.close()


def test_connection_dropped_by_mta_mid_message(daemon: AclMilterd) -> None:
    mc = client(daemon)
    mc.mail("<a@example.org>")
    mc.rcpt("<b@example.test>")
    mc.data()
    mc.body(b"half")
    assert mc.sock is not None
    mc.sock.close()        # the MTA vanishes: the service must carry on
    mc.sock = None
    mc2 = client(daemon)
    try:
        assert mc2.message("<a@example.org>", ["<b@example.test>"], HDRS, b"ok\r\n").action in ("continue", "accept")
    finally:
        mc2.close()


def test_metrics_endpoint(daemon: AclMilterd, metrics_port: int) -> None:
    mc = client(daemon)
    try:
        mc.message("<a@example.org>", ["<b@example.test>"], HDRS, b"ok\r\n")
    finally:
        mc.close()
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    assert "aclmilter_messages_total{" in text
    assert "aclmilter_statement_hits_total{where=" in text
    assert 'aclmilter_callback_seconds_count{stage="rcpt"}' in text
    assert "aclmilter_dns_timeouts_total" in text
