"""Run `aclmilter serve` as a subprocess for integration tests; stop it by PID.

    with AclMilterd(policy_path, kind="unix") as d:     # or kind="inet"
        pf.set_milter(d.postfix_spec)                   # "unix:/..." or "inet:127.0.0.1:PORT"
        d.reload(); d.wait_log(r"reloaded"); d.kill()   # SIGUSR1 / SIGKILL (mid-transaction tests)
        d.restart()                                     # same socket again

The unix socket lives in a directory user `postfix` can traverse, with group `postfix` and
mode 0660 (what a real installation uses). A missing `aclmilter` console script fails the
test: install the package with `.venv/bin/pip install -e .`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import pytest

from .postfix import world_traversable_dir
from .procs import free_port, stop_pid, wait_path, wait_port


def aclmilter_binary() -> str:
    """The console script next to the running interpreter (the project venv)."""
    path = Path(sys.executable).parent / "aclmilter"
    if not path.exists():
        found = shutil.which("aclmilter")
        if not found:
            pytest.fail("aclmilter is not installed: run .venv/bin/pip install -e .")
        return found
    return str(path)


class AclMilterd:
    """One `aclmilter serve` process on a unix or inet socket."""

    def __init__(self, policy: str | Path, kind: str = "unix", *, workdir: Path | None = None,
                 extra_args: Sequence[str] = (), dry_run: bool = False, workers: int = 1,
                 metrics_port: int | None = None, env: dict[str, str] | None = None,
                 prefix: Sequence[str] = ()) -> None:
        self.policy = Path(policy)
        self.prefix = list(prefix)          # e.g. valgrind's command line (bench/daemon_cost.py)
        self.kind = kind
        self._own_workdir = workdir is None
        self.workdir = workdir or world_traversable_dir("aclmilterd-")
        self.log_path = self.workdir / "aclmilter.log"
        self.extra_args = list(extra_args)
        self.dry_run = dry_run
        self.workers = workers
        self.metrics_port = metrics_port
        self.env = env
        self.proc: subprocess.Popen | None = None
        if kind == "unix":
            self.sock_path = self.workdir / "aclmilter.sock"
            self.port = 0
        else:
            self.sock_path = None
            self.port = free_port()

    @property
    def spec(self) -> str:
        """The --socket argument (libmilter form)."""
        return f"unix:{self.sock_path}" if self.kind == "unix" else f"inet:{self.port}@127.0.0.1"

    @property
    def postfix_spec(self) -> str:
        """The same socket in Postfix's smtpd_milters syntax."""
        return f"unix:{self.sock_path}" if self.kind == "unix" else f"inet:127.0.0.1:{self.port}"

    @property
    def client_spec(self) -> str:
        """The same socket for tests.harness.milterclient."""
        return self.postfix_spec

    def command(self) -> list[str]:
        cmd = [*self.prefix, aclmilter_binary(), "serve", "--policy", str(self.policy), "--socket", self.spec,
               "--log-level", "info"]
        if self.kind == "unix":
            cmd += ["--socket-group", "postfix", "--socket-mode", "0660"]
        if self.dry_run:
            cmd.append("--dry-run")
        if self.workers != 1:
            cmd += ["--workers", str(self.workers)]
        if self.metrics_port:
            cmd += ["--metrics", f"127.0.0.1:{self.metrics_port}"]
        return cmd + self.extra_args

    def start(self, timeout: float = 30.0) -> "AclMilterd":
        """Start the daemon and wait until its socket accepts connections."""
        offset = len(self.log())
        with open(self.log_path, "ab") as fh:
            self.proc = subprocess.Popen(self.command(), stdout=fh, stderr=subprocess.STDOUT,
                                         env=self.env, start_new_session=True)
        try:
            if self.kind == "unix":
                assert self.sock_path is not None
                deadline = time.monotonic() + timeout
                wait_path(self.sock_path, timeout)
                # a SIGKILLed predecessor leaves its socket file behind: wait for our own
                # process to say it listens
                while time.monotonic() < deadline and "listening on" not in self.log()[offset:]:
                    if self.proc.poll() is not None:
                        break
                    time.sleep(0.05)
            else:
                wait_port("127.0.0.1", self.port, timeout, self.proc)
            if self.proc.poll() is not None:
                raise RuntimeError(f"aclmilter exited with {self.proc.returncode}")
        except Exception as exc:  # noqa: BLE001 - any start failure is reported with the log
            raise RuntimeError(f"aclmilter did not start: {exc}\n{self.log()[-3000:]}") from None
        return self

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL after a bound) by PID; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            stop_pid(self.proc.pid, timeout=15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL the daemon (simulates a crash) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> "AclMilterd":
        self.stop()
        return self.start()

    def reload(self) -> None:
        """Ask for a policy reload (SIGUSR1, what systemd's ExecReload sends)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGUSR1)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 20.0, count: int = 1) -> list[str]:
        """Wait until `pattern` matches at least `count` times in the log; return the matches."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = rx.findall(self.log())
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pattern!r} x{count} not in aclmilter log:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def __enter__(self) -> "AclMilterd":
        return self.start()

    def remove(self) -> None:
        """Delete the work directory if this object created it (after stop())."""
        if self._own_workdir and self.proc is None and os.environ.get("ACLMILTER_KEEP_TMP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.remove()
