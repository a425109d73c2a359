"""Dependency health reaches the metrics from every client: DNS, Redis, dccifd and the
scanner each report up (with latency) after a call that worked and down (plus an error)
after one that failed — a negative answer such as NXDOMAIN counts as up."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import aclmilter.conditions  # noqa: F401 - registers the checks
from aclmilter.checks.bmi import parse_bmi
from aclmilter.checks.scan import ScanStatus
from aclmilter.clients.dccifd import DccifdClient, TransportError, parse_address
from aclmilter.clients.dns import DnsClient, DnsTempError, parse_dns_settings
from aclmilter.clients.redis import RedisClient, RedisUnavailable, parse_servers
from aclmilter.context import EvalContext
from aclmilter.policy.model import Policy
from aclmilter.services import Services
from aclmilter.stages import Stage
from aclmilter.state import ClientIdentity, Connection, Recipient, Transaction
from tests.harness.fake_dccifd import FakeDccifd
from tests.harness.procs import free_port
from tests.harness.recording_dns import RecordingDns
from tests.harness.redis import RedisServer, redis_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


class Recorder:
    """The `Metrics.dependency` interface, recording (name, ok) per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def dependency(self, name: str, ok: bool, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append((name, ok))

    def dns_timeout(self) -> None:
        pass

    def check_latency(self, check: str, seconds: float) -> None:
        pass

    def cache_size(self, cache: str, entries: int) -> None:
        assert entries >= 0


def _closed_udp_port() -> int:
    """A loopback UDP port nobody listens on (queries there are refused by the kernel)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_dns_up_for_answers_and_nxdomain_down_when_unreachable() -> None:
    rec = Recorder()
    with RecordingDns({("a.example", "A"): ["192.0.2.1"]}) as server:
        client = DnsClient.from_settings(parse_dns_settings({"nameservers": [server.nameserver],
                                                             "timeout": 1, "lifetime": 1}), metrics=lambda: rec)
        assert client.lookup("a.example", "A") == ["192.0.2.1"]
        assert client.lookup("missing.example", "A") == []
    dead = DnsClient.from_settings(parse_dns_settings({"nameservers": [f"127.0.0.1:{_closed_udp_port()}"],
                                                       "timeout": 0.3, "lifetime": 0.6}), metrics=lambda: rec)
    with pytest.raises(DnsTempError):
        dead.lookup("a.example", "A")
    assert rec.calls == [("dns", True), ("dns", True), ("dns", False)]


def test_redis_up_and_down(redis_server: RedisServer) -> None:  # noqa: F811
    rec = Recorder()
    up = RedisClient(parse_servers([redis_server.spec]), 2.0)
    up.metrics = lambda: rec
    assert up.execute(["PING"]) in (b"PONG", "PONG")
    down = RedisClient(parse_servers([f"127.0.0.1:{free_port()}/0/"]), 0.5)
    down.metrics = lambda: rec
    with pytest.raises(RedisUnavailable):
        down.execute(["GET", "x"])
    assert rec.calls == [("redis", True), ("redis", False)]


def test_dccifd_up_and_down(tmp_path: Path) -> None:
    rec = Recorder()
    envelope = b"header\n192.0.2.1\nhelo\nsender@example.org\nrcpt@example.net\n\n"
    with FakeDccifd.tcp("127.0.0.1") as fake:
        up = DccifdClient(parse_address(fake.address), 5.0, metrics=lambda: rec)
        assert up.exchange(envelope, b"Subject: x\r\n\r\nbody\r\n").startswith(b"A\n")
    down = DccifdClient(parse_address(f"127.0.0.1 {free_port()}"), 1.0, metrics=lambda: rec)
    with pytest.raises(TransportError):
        down.exchange(envelope, b"\r\n")
    assert rec.calls == [("dccifd", True), ("dccifd", False)]


def test_scanner_down_is_reported() -> None:
    rec = Recorder()
    settings = {"bmi": parse_bmi({"scanner": {"type": "spamd", "address": f"127.0.0.1:{free_port()}",
                                              "timeout": 1}})}
    txn = Transaction(sender="a@example.org", headers=[("Subject", "x")])
    txn.body.write(b"body\r\n")
    txn.recipients.append(Recipient("b@example.net", (), "<b@example.net>"))
    txn.controls["bmi_run"] = ""
    services = Services(settings)
    services.metrics = rec
    ctx = EvalContext(Connection(client=ClientIdentity(address="192.0.2.7")), txn, Stage.DATA, services,
                      Policy(file="t.yaml", settings=settings, lists={}, acls={}))
    assert ctx.check("scan").status is ScanStatus.FAILED
    assert rec.calls == [("scanner:bmi", False)]
