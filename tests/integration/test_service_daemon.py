"""`aclmilter serve` as a process: start-up errors, workers, reload, metrics, systemd unit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.harness.aclmilterd import AclMilterd, aclmilter_binary
from tests.harness.milterclient import MilterClient
from tests.harness.postfix import world_traversable_dir
from tests.harness.procs import free_port, require_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
POLICY = ROOT / "tests" / "fixtures" / "service-protocol.yaml"
HDRS = [("From", "<a@example.org>"), ("Subject", "hi")]


@pytest.fixture()
def workdir():
    d = world_traversable_dir("aclmilter-daemon-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def one_message(spec: str, helo: str = "client.example.org") -> dict:
    with MilterClient(spec) as mc:
        mc.connect("[203.0.113.7]", "4", 4711, "203.0.113.7", {"v": "Postfix 3.7"})
        mc.helo(helo)
        ans = mc.message("<a@example.org>", ["<b@example.test>"], HDRS, b"x\r\n")
        assert ans.action in ("continue", "accept")
        return dict(ans.headers_added())


def test_bad_policy_refuses_to_start(workdir: Path) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text("acl:\n  rcpt:\n    - deny:\n        nonsense_condition: x\n")
    proc = subprocess.run([aclmilter_binary(), "serve", "--policy", str(bad), "--socket",
                           f"unix:{workdir}/s.sock"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert re.search(rf"{re.escape(str(bad))}:4:\d+: .*nonsense_condition", proc.stderr)


def test_bad_socket_spec_is_a_usage_error() -> None:
    proc = subprocess.run([aclmilter_binary(), "serve", "--policy", str(POLICY), "--socket", "tcp:1@x"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "expected unix:/path" in proc.stderr


def test_inet_listener_gets_tcp_nodelay(workdir: Path) -> None:
    with AclMilterd(POLICY, "inet", workdir=workdir) as d:
        assert "(TCP_NODELAY)" in d.log()
        assert "X-Seen" in one_message(d.client_spec)


def test_workers_reload_and_merged_metrics(workdir: Path) -> None:
    policy = workdir / "policy.yaml"
    shutil.copy(POLICY, policy)
    port = free_port()
    d = AclMilterd(policy, "unix", workdir=workdir, workers=2, metrics_port=port)
    with d:
        d.wait_log(r"serving \(pid \d+\)", count=2)
        for _ in range(6):
            one_message(d.client_spec)
        policy.write_text(POLICY.read_text().replace("X-Seen:", "X-Seen-Again:"))
        d.reload()                       # SIGUSR1 to the parent, forwarded to each worker
        d.wait_log(r"reloaded", count=2)
        for _ in range(4):
            assert "X-Seen-Again" in one_message(d.client_spec)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        total = sum(float(v) for v in re.findall(r"^aclmilter_messages_total\{[^}]*\} (\S+)$", text, re.M))
        assert total == 10
        assert d.proc is not None
        sock = d.sock_path
    assert d.proc is None
    assert sock is not None and not os.path.exists(sock), d.log()[-3000:]
    assert "Traceback" not in d.log()


def _threads_taking(pid: int, signum: int) -> list[int]:
    """Thread ids of `pid` that do not block `signum` (could be handed a process signal)."""
    takers = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as fh:
            blocked = next(int(line.split()[1], 16) for line in fh if line.startswith("SigBlk:"))
        if not blocked & (1 << (signum - 1)):
            takers.append(int(tid))
    return takers


@pytest.mark.parametrize("workers", [1, 2])
def test_stop_signal_reaches_only_the_thread_that_acts_on_it(workdir: Path, workers: int) -> None:
    """A helper thread (metrics server, reload reader) must never swallow SIGTERM: in the
    master only the main thread takes it (it forwards it), in a libmilter process only
    libmilter's own signal thread does (it sigwaits for it, which unblocks it there)."""
    import signal
    with AclMilterd(POLICY, "unix", workdir=workdir, workers=workers, metrics_port=free_port()) as d:
        d.wait_log(r"serving \(pid \d+\)", count=workers)
        one_message(d.client_spec)
        servers = [int(p) for p in re.findall(r"serving \(pid (\d+)\)", d.log())]
        assert d.pid is not None
        if workers > 1:
            assert len(os.listdir(f"/proc/{d.pid}/task")) >= 2      # main + metrics server
            for sig in (signal.SIGTERM, signal.SIGUSR1):
                assert _threads_taking(d.pid, sig) == [d.pid]
        for pid in servers:
            assert len(_threads_taking(pid, signal.SIGTERM)) == 1     # sigwait shows it unblocked


def _in_accept(pid: int) -> bool:
    """True if the main thread of `pid` is blocked in accept() (syscall 43 on x86-64)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/syscall") as fh:
            return fh.read().split()[0] in ("43", "288")       # accept, accept4
    except (OSError, IndexError):
        return False


def test_stop_frees_a_worker_stuck_in_accept(workdir: Path) -> None:
    """Workers share one listener; the one that loses the race for a connection sits in a
    blocking accept() holding libmilter's listener lock, which libmilter's stop waits for.
    The parent wakes such workers with a connection of its own, so a stop always finishes."""
    import signal
    import time
    d = AclMilterd(POLICY, "unix", workdir=workdir, workers=2)
    with d:
        d.wait_log(r"serving \(pid \d+\)", count=2)
        workers = [int(p) for p in re.findall(r"serving \(pid (\d+)\)", d.log())]
        stuck = []
        for _ in range(60):             # bounded: the race usually shows within a few messages
            one_message(d.client_spec)
            time.sleep(0.05)
            stuck = [w for w in workers if _in_accept(w)]
            if stuck:
                break
        assert d.proc is not None
        os.kill(d.proc.pid, signal.SIGTERM)
        d.proc.wait(timeout=18)         # the parent's own SIGKILL fallback comes only after 20 s
        sock = d.sock_path
        log = d.log()
    assert not os.path.exists(sock), log[-2000:]
    assert log.count("INFO stopped (pid") == 2, (stuck, log[-2000:])
    assert "did not stop" not in log


def test_worker_killed_is_restarted(workdir: Path) -> None:
    import signal
    with AclMilterd(POLICY, "unix", workdir=workdir, workers=2) as d:
        d.wait_log(r"serving \(pid \d+\)", count=2)
        pids = [int(p) for p in re.search(r"started 2 workers: (\d+) (\d+)", d.log()).groups()]
        os.kill(pids[0], signal.SIGKILL)          # a worker this test started (via the parent)
        d.wait_log(rf"worker {pids[0]} exited with -9; restarting it")
        d.wait_log(r"serving \(pid \d+\)", count=3)
        for _ in range(4):
            assert "X-Seen" in one_message(d.client_spec)


def test_reload_with_errors_keeps_old_policy(workdir: Path) -> None:
    policy = workdir / "policy.yaml"
    shutil.copy(POLICY, policy)
    with AclMilterd(policy, "unix", workdir=workdir) as d:
        policy.write_text("acl:\n  rcpt:\n    - deny:\n        nonsense_condition: x\n")
        d.reload()
        d.wait_log(r"reload refused: .*policy.yaml:4:\d+")
        assert "X-Seen" in one_message(d.client_spec)


def test_systemd_unit_verifies(workdir: Path) -> None:
    analyze = require_binary("systemd-analyze")
    unit = (ROOT / "systemd" / "aclmilter.service").read_text()
    # verify checks that ExecStart binaries exist: point them at this checkout's venv
    unit = unit.replace("/usr/local/bin/aclmilter", aclmilter_binary())
    path = workdir / "aclmilter.service"
    path.write_text(unit)
    proc = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    sec = subprocess.run([analyze, "security", "--offline=yes", str(path)], capture_output=True,
                         text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", sec.stdout + sec.stderr)
    assert m and float(m.group(1)) <= 2.0, sec.stdout[-500:]
