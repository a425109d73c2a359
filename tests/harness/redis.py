# SPDX-License-Identifier: GPL-3.0-or-later
"""A real redis-server on a free loopback port: no persistence, private directory, pidfile.

`RedisServer(tmp_dir)` starts it; `stop()` ends it by the PID in its pidfile (never by
name); `start()` again reuses the same port and directory, so tests can kill Redis in the
middle of a run and bring it back. A missing redis-server binary fails the test.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from . import procs


class RedisServer:
    """One redis-server process owned by a test (foreground child, stopped by PID)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = procs.require_binary("redis-server")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or procs.free_port()
        self.pidfile = self.dir / f"redis-{self.port}.pid"
        self.log = self.dir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def spec(self) -> str:
        """The `redis_servers` entry for this server (database 0, no password)."""
        return f"127.0.0.1:{self.port}/0/"

    def start(self) -> "RedisServer":
        """Start the server and wait until it answers PING."""
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes",
               "--save", "", "--appendonly", "no", "--dir", str(self.dir), "--pidfile", str(self.pidfile),
               "--daemonize", "no", "--logfile", str(self.log)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        procs.wait_port("127.0.0.1", self.port, timeout=20, proc=self.proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if self.client().ping():
                    return self
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} never answered PING")

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL if it lingers)."""
        if self.proc is not None:
            procs.stop_pid(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.proc = None

    def client(self):  # redis.Redis
        """A plain redis-py client for checking the server's contents from the test."""
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, decode_responses=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test, stopped afterwards."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server shared by a test module (tests FLUSHDB what they need)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


class FakeClock:
    """A controlled clock for `services.Services(settings, clock=...)`: time moves only when told."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings_for(servers: str | list[str] | None = None, **extra: object) -> dict:
    """A validated settings dict for the Redis/ratelimit features (as the loader would build it)."""
    from aclmilter.clients.redis import parse_servers
    if isinstance(servers, str):
        servers = [servers]
    settings: dict = {"redis_servers": parse_servers(servers), "redis_timeout": 2.0,
                      "ratelimit_key_prefix": "aclmilter:ratelimit:"}
    settings.update(extra)
    return settings


def make_context(settings: dict, stage_name: str = "connect", *, clock: FakeClock | None = None,
                 address: str = "192.0.2.1", services=None, conn=None, txn=None, rcpt=None):
    """A real EvalContext with real Services over a minimal Policy (tests/builders.make_ctx)."""
    from tests.builders import make_ctx

    return make_ctx(stage=stage_name, settings=settings, address=address, port="2525", conn=conn, txn=txn,
                    rcpt=rcpt, services=services, clock=clock or FakeClock())
