"""End to end: smtplib -> real Postfix -> aclmilter (subprocess) -> Postfix -> aiosmtpd sink.

One Postfix, one sink and one milter per module; the dry-run and reload cases reconfigure
Postfix with `postfix reload` instead of starting new instances.
"""

from __future__ import annotations

import shutil
import smtplib
import threading
from pathlib import Path

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import Postfix, simple_message, world_traversable_dir
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "service-e2e.yaml"
SENDER = "alice@example.org"


@pytest.fixture(scope="module")
def workdir():
    d = world_traversable_dir("aclmilter-e2e-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def policy(workdir: Path) -> Path:
    """A private copy of the policy: the reload test rewrites it."""
    p = workdir / "policy.yaml"
    shutil.copy(FIXTURE, p)
    return p


@pytest.fixture(scope="module")
def sink():
    with Sink() as s:
        yield s


@pytest.fixture(scope="module")
def milterd(policy: Path, workdir: Path):
    d = AclMilterd(policy, "unix", workdir=workdir / "d1")
    d.workdir.mkdir(mode=0o755)
    d.sock_path = d.workdir / "aclmilter.sock"
    d.log_path = d.workdir / "aclmilter.log"
    with d:
        yield d


@pytest.fixture(scope="module")
def postfix(sink: Sink, milterd: AclMilterd, workdir: Path):
    pf = Postfix(relay_port=sink.port, milter=milterd.postfix_spec, root=workdir / "pf")
    pf.start()
    yield pf
    pf.stop()


@pytest.fixture()
def pf(postfix: Postfix, sink: Sink, milterd: AclMilterd) -> Postfix:
    """The shared Postfix with the normal milter attached and an empty sink."""
    if postfix.milter != milterd.postfix_spec:
        postfix.set_milter(milterd.postfix_spec)
    sink.clear()
    return postfix


def test_message_passes_with_policy_header(pf: Postfix, sink: Sink, milterd: AclMilterd) -> None:
    r = pf.send(SENDER, ["ok@example.test"], simple_message(subject="hello"))
    assert r.accepted, r
    got = sink.wait_for_rcpt("ok@example.test")
    assert got.header("X-Test-Policy") == f"passed for {SENDER}"
    # one log line per message with queue id, client, sender, recipients, decision and where
    line = milterd.wait_log(rf"qid={r.queue_id} client=\S+ helo=client.example.org from=<{SENDER}> "
                            r"to=<ok@example.test> decision=\S+ where=\S+")
    assert line


def test_rcpt_deny_rejects_only_that_recipient(pf: Postfix, sink: Sink) -> None:
    r = pf.send(SENDER, ["rcptdeny@example.test", "ok2@example.test"], simple_message())
    assert r.rcpt["rcptdeny@example.test"][0] == 550
    assert "recipient refused by test policy" in r.rcpt["rcptdeny@example.test"][1]
    assert r.rcpt["ok2@example.test"][0] == 250 and r.accepted
    got = sink.wait_for_rcpt("ok2@example.test")
    assert got.rcpt_tos == ("ok2@example.test",)


def test_rcpt_defer_gives_4xx(pf: Postfix) -> None:
    r = pf.send(SENDER, ["rcptdefer@example.test"], simple_message())
    assert r.rcpt["rcptdefer@example.test"][0] == 451
    assert r.data is None


def test_refused_transaction_is_logged_with_the_deciding_statement(pf: Postfix, milterd: AclMilterd) -> None:
    r = pf.send(SENDER, ["rcptdefer@example.test"], simple_message())
    assert r.rcpt["rcptdefer@example.test"][0] == 451
    # the transaction never reaches end of data: it is logged when the session goes on or ends
    milterd.wait_log(rf"from=<{SENDER}> to=- decision=tempfail_at_rcpt where=\S+policy\.yaml:11")


def test_data_deny_rejects_message(pf: Postfix, sink: Sink) -> None:
    r = pf.send(SENDER, ["ok@example.test"], simple_message(subject="please datadeny me"))
    assert r.data is not None and r.data[0] == 550, r
    assert "message refused by test policy" in r.data[1]
    r2 = pf.send(SENDER, ["marker@example.test"], simple_message())
    assert r2.accepted
    sink.wait_for_rcpt("marker@example.test")
    assert all("ok@example.test" not in d.rcpt_tos for d in sink.deliveries)


def test_deliver_discard_deletes_recipient(pf: Postfix, sink: Sink) -> None:
    r = pf.send(SENDER, ["eomdelete@example.test", "keep@example.test"], simple_message())
    assert r.accepted
    got = sink.wait_for_rcpt("keep@example.test")
    assert got.rcpt_tos == ("keep@example.test",)


def test_drop_disconnects(pf: Postfix, sink: Sink) -> None:
    r = pf.send(SENDER, ["dropme@example.test"], simple_message())
    code, text = r.rcpt["dropme@example.test"]
    assert code == 521 and "go away" in text
    assert r.disconnected
    # the next session is served normally
    assert pf.send(SENDER, ["afterdrop@example.test"], simple_message()).accepted
    sink.wait_for_rcpt("afterdrop@example.test")


def test_dry_run_changes_nothing(pf: Postfix, sink: Sink, policy: Path, workdir: Path) -> None:
    (workdir / "dry").mkdir(mode=0o755, exist_ok=True)
    with AclMilterd(policy, "inet", workdir=workdir / "dry", dry_run=True) as dry:
        pf.set_milter(dry.postfix_spec)
        r = pf.send(SENDER, ["rcptdeny@example.test", "eomdelete@example.test"],
                    simple_message(subject="datadeny"))
        assert r.rcpt["rcptdeny@example.test"][0] == 250
        assert r.accepted
        got = sink.wait_for_rcpt("rcptdeny@example.test")
        assert set(got.rcpt_tos) == {"rcptdeny@example.test", "eomdelete@example.test"}
        assert got.header("X-Test-Policy") is None       # the DATA deny ends that ACL first
        # monitor mode names the first refusal (the RCPT deny), not the later DATA deny
        assert got.header("X-ACLMilter-Dry-Run") == \
            f"would reject at rcpt ({policy}:8); would remove 1 recipient(s)"
        dry.wait_log(r"dry-run: would reject at rcpt")
        dry.wait_log(r"dry_run=yes")


def test_reload_under_traffic_loses_nothing(pf: Postfix, sink: Sink, milterd: AclMilterd, policy: Path) -> None:
    original = policy.read_text()
    n = 30
    results: list = []

    def traffic() -> None:
        for i in range(n):
            results.append(pf.send(SENDER, [f"load{i}@example.test"], simple_message(subject=f"m{i}")))

    t = threading.Thread(target=traffic)
    t.start()
    try:
        ok = refused = 0
        for i in range(4):
            # alternate between a changed valid policy and a broken one (refused, old kept);
            # wait for each outcome before touching the file again
            if i % 2 == 0:
                policy.write_text(original.replace("passed for", f"reloaded{i} for"))
                milterd.reload()
                ok += 1
                milterd.wait_log(r"policy \S+ reloaded", count=ok)
            else:
                policy.write_text(original + "\n  bogus: [\n")
                milterd.reload()
                refused += 1
                milterd.wait_log(r"reload refused \(", count=refused)
    finally:
        t.join(timeout=120)
        policy.write_text(original)
    assert len(results) == n and all(r.accepted for r in results), [r for r in results if not r.accepted]
    sink.wait_for(n, timeout=60)
    milterd.reload()
    milterd.wait_log(r"policy \S+ reloaded", count=3)


def test_killed_milter_tempfails_then_recovers(pf: Postfix, sink: Sink, milterd: AclMilterd) -> None:
    client = smtplib.SMTP("127.0.0.1", pf.port, timeout=60)
    try:
        client.ehlo("client.example.org")
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt("victim@example.test")[0] == 250
        milterd.kill()             # mid-transaction: the milter disappears
        code, _msg = client.data(simple_message())
    except smtplib.SMTPDataError as exc:      # refused at the DATA command itself
        code = exc.smtp_code
    except smtplib.SMTPServerDisconnected:
        code = 421
    finally:
        try:
            client.close()
        except Exception:  # noqa: BLE001
            pass
    assert 400 <= code < 500        # milter_default_action = tempfail: the client keeps the mail
    milterd.start()
    r = pf.send(SENDER, ["victim@example.test"], simple_message())
    assert r.accepted, r            # the client's retry after the restart goes through
    got = sink.wait_for_rcpt("victim@example.test")
    assert got.header("X-Test-Policy")
    assert len([d for d in sink.deliveries if "victim@example.test" in d.rcpt_tos]) == 1
