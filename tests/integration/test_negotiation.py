"""Only the milter steps the policy uses are negotiated; a reload changes them for new
connections only. Proven with the protocol client and through a real Postfix, on a unix
socket (steps skipped or left unanswered) and over TCP (the same, but DATA always answered)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from miltertest import constants as C

from tests.harness.aclmilterd import AclMilterd
from tests.harness.milterclient import MilterClient
from tests.harness.postfix import Postfix, simple_message, world_traversable_dir
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

# No DATA ACL and a header at the very top: Postfix need not send DATA, headers or body.
LEAN = """\
acl:
  mail:
    - accept:
        add_header: ":at_start:X-Lean: from $sender_address"
"""
# A DATA ACL that reads a header: every new connection must get the headers again.
WITH_CONTENT = LEAN + """\
  data:
    - deny:
        condition: "${if match{$h_subject:}{forbidden}}"
        message: "550 5.7.1 subject refused"
    - accept
"""
CONNECT_MACROS = {"j": "mx.test.example", "v": "Postfix 3.7", "{daemon_name}": "mx"}


@pytest.fixture()
def workdir():
    d = world_traversable_dir("aclmilter-nego-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def open_client(d: AclMilterd) -> MilterClient:
    mc = MilterClient(d.client_spec).open()
    assert mc.connect("[203.0.113.7]", "4", 4711, "203.0.113.7", CONNECT_MACROS).action in ("continue", "noreply")
    mc.helo("client.example.org")
    return mc


@pytest.mark.parametrize("kind", ["unix", "inet"])
def test_reload_changes_negotiation_for_new_connections_only(workdir: Path, kind: str) -> None:
    policy = workdir / "policy.yaml"
    policy.write_text(LEAN)
    with AclMilterd(policy, kind, workdir=workdir) as d:
        d.wait_log(r"headers and body needed: no")
        old = open_client(d)
        try:
            assert old.protocol & C.SMFIP_NOHDRS and old.protocol & C.SMFIP_NOBODY
            if kind == "unix":
                assert old.protocol & C.SMFIP_NODATA and old.protocol & C.SMFIP_NR_RCPT
            else:       # over TCP DATA is always sent and answered (no Nagle/delayed-ACK stall)
                assert not old.protocol & (C.SMFIP_NODATA | C.SMFIP_NR_DATA)
                assert old.protocol & C.SMFIP_NR_RCPT
            # the MAIL ACL cannot refuse: it runs, but nobody waits for its answer
            assert old.protocol & C.SMFIP_NR_CONN and old.protocol & C.SMFIP_NR_MAIL
            policy.write_text(WITH_CONTENT)
            d.reload()
            d.wait_log(r"reloaded .*headers and body needed: yes \(a data ACL\)")
            with MilterClient(d.client_spec) as new:
                assert not new.protocol & (C.SMFIP_NOHDRS | C.SMFIP_NOBODY)
                assert new.protocol & C.SMFIP_NR_MAIL
                new.connect("[203.0.113.8]", "4", 4712, "203.0.113.8", CONNECT_MACROS)
                new.helo("client.example.org")
                ans = new.message("<a@example.org>", ["<b@example.test>"], [("Subject", "forbidden")], b"x\r\n")
                assert ans.action == "reply" and ans.reply.startswith("550 5.7.1 subject refused")
            # the connection opened before the reload keeps the policy it negotiated with
            ans = old.message("<a@example.org>", ["<b@example.test>"], [("Subject", "forbidden")], b"x\r\n")
            assert ans.action in ("continue", "accept")
            assert dict(ans.headers_added())["X-Lean"] == "from a@example.org"
        finally:
            old.close()


@pytest.mark.parametrize("kind", ["unix", "inet"])
def test_postfix_flows_with_lean_negotiation_and_after_reload(workdir: Path, kind: str) -> None:
    policy = workdir / "policy.yaml"
    policy.write_text(LEAN)
    with Sink() as sink, AclMilterd(policy, kind, workdir=workdir) as d:
        pf = Postfix(relay_port=sink.port, milter=d.postfix_spec, root=workdir / "pf")
        pf.start()
        try:
            sent = [pf.send("alice@example.org", [f"r{i}@example.test"], simple_message(subject=f"m{i}"))
                    for i in range(3)]
            assert all(r.accepted for r in sent), sent
            for i in range(3):
                got = sink.wait_for_rcpt(f"r{i}@example.test")
                assert got.header_names()[0] == "X-Lean"            # at the very top
                assert got.header("X-Lean") == "from alice@example.org"
                assert got.header("Subject") == f"m{i}"
            policy.write_text(WITH_CONTENT)
            d.reload()
            d.wait_log(r"reloaded .*headers and body needed: yes")
            refused = pf.send("alice@example.org", ["x@example.test"], simple_message(subject="forbidden"))
            assert not refused.accepted and refused.data is not None and "subject refused" in refused.data[1], refused
            ok = pf.send("alice@example.org", ["y@example.test"], simple_message(subject="fine"))
            assert ok.accepted, ok
            assert sink.wait_for_rcpt("y@example.test").header("X-Lean") == "from alice@example.org"
            assert not any("x@example.test" in dv.rcpt_tos for dv in sink.deliveries)
        finally:
            pf.stop()


# A MAIL ACL that cannot refuse by design, but whose `set` fails at run time for one sender:
# MAIL is not waited for, so the error is held and given at the next answered step.
FAILS_UNANSWERED = """\
acl:
  mail:
    - accept:
        condition: "${if eq{$sender_address_local_part}{broken}}"
        set:
          acl_m_n: "${eval:$sender_address_local_part}"
    - accept:
        add_header: ":at_start:X-Mail-Acl: ran for $sender_address"
"""


@pytest.mark.parametrize("kind", ["unix", "inet"])
def test_error_in_an_unanswered_mail_acl_defers_the_message_at_the_next_answer(workdir: Path, kind: str) -> None:
    policy = workdir / "policy.yaml"
    policy.write_text(FAILS_UNANSWERED)
    with Sink() as sink, AclMilterd(policy, kind, workdir=workdir) as d:
        d.wait_log(r"answers needed at: none")
        pf = Postfix(relay_port=sink.port, milter=d.postfix_spec, root=workdir / "pf")
        pf.start()
        try:
            bad = pf.send("broken@example.org", ["x@example.test"], simple_message(subject="bad"))
            # MAIL and RCPT were accepted without waiting; the held 451 comes with the next answer:
            # end of data on a unix socket, the DATA command over TCP (always answered there)
            assert bad.mail[0] == 250 and bad.rcpt["x@example.test"][0] == 250, bad
            assert not bad.accepted, bad
            if kind == "unix":
                assert bad.data is not None and bad.data[0] == 451, bad
            else:
                assert bad.data is None and bad.error is not None and bad.error.startswith("451"), bad
            good = pf.send("alice@example.org", ["y@example.test"], simple_message(subject="good"))
            assert good.accepted, good
            got = sink.wait_for_rcpt("y@example.test")
            assert got.header("X-Mail-Acl") == "ran for alice@example.org"
            # the log line names the step and the statement, not an accept
            d.wait_log(r"from=<broken@example.org> to=<x@example.test> decision=tempfail_at_mail "
                       r"where=\S*policy.yaml:3")
            assert not any("x@example.test" in dv.rcpt_tos for dv in sink.deliveries)
        finally:
            pf.stop()
