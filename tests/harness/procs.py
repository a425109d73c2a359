"""Start and stop the daemons tests need: free loopback ports, PID-tracked processes.

Every process is stopped by the PID we started (never by name). A missing binary is a test
failure, not a skip: CI installs everything with scripts/setup.sh.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence

import pytest


def free_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on loopback right now (both TCP and UDP for DNS use)."""
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found in 50 tries")


def require_binary(name: str) -> str:
    """Return the path of a binary, failing the test (not skipping) when it is missing."""
    for d in ("", "/usr/sbin/", "/usr/bin/", "/sbin/"):
        path = shutil.which(d + name) if d else shutil.which(name)
        if path:
            return path
    pytest.fail(f"{name} is not installed: run scripts/setup.sh (tests never skip a missing component)")


def wait_port(host: str, port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until a TCP port accepts connections; fail with the process log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError):
            with socket.create_connection((host, port), timeout=0.5):
                return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


def wait_path(path: str | Path, timeout: float = 20.0) -> None:
    """Wait until a file or socket exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear within {timeout}s")


def stop_pid(pid: int, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Send `sig` to a PID we started, wait for it to go, then SIGKILL it (bounded in time)."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            # not our child (daemonised): poll for existence
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop_pidfile(path: str | Path, timeout: float = 15.0) -> None:
    """Stop the process whose PID a daemon wrote to `path` (if the file exists)."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        stop_pid(int(Path(path).read_text().split()[0]), timeout)


@contextlib.contextmanager
def running(cmd: Sequence[str], log: str | Path, env: dict | None = None, cwd: str | None = None
            ) -> Iterator[subprocess.Popen]:
    """Run a foreground process for the duration of the block; stop it by PID afterwards."""
    with open(log, "ab") as fh:
        proc = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            stop_pid(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
