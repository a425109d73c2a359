# SPDX-License-Identifier: GPL-3.0-or-later
"""A real authoritative DNS server (Knot) for integration tests, plus a server that never answers.

`knot_dns` (session scope) serves every `tests/fixtures/dns/zones/*.zone` file: the zone
name is the file name without `.zone`, and `root.zone` is the root zone "." so that any name
outside the test zones gets a clean NXDOMAIN instead of REFUSED. It listens on 127.0.0.1 and
::1 at one free port and is stopped by PID at the end of the session.

`silent_dns` is a UDP and TCP socket on loopback that reads queries and never replies, for
tests of timeouts (SPF temperror, DKIM temperror, ...).

Usage in a test module:

    from tests.harness.knot import knot_dns, silent_dns  # noqa: F401  (pytest fixtures)
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from .procs import free_port, require_binary, running

ZONES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "dns" / "zones"


@dataclass(frozen=True)
class DnsServer:
    """Where a test DNS server listens."""

    port: int
    zones: tuple[str, ...] = ()
    log: Path | None = None

    @property
    def nameserver(self) -> str:
        """The IPv4 server as `settings.dns.nameservers` takes it: "127.0.0.1:PORT"."""
        return f"127.0.0.1:{self.port}"

    @property
    def nameserver6(self) -> str:
        """The IPv6 server: "[::1]:PORT"."""
        return f"[::1]:{self.port}"

    def settings(self, **extra: object) -> dict:
        """A raw `settings.dns` mapping pointing at this server (both address families)."""
        return {"nameservers": [self.nameserver, self.nameserver6], **extra}


def zone_files(directory: Path = ZONES_DIR) -> list[tuple[str, Path]]:
    """Return (zone name, file) for every *.zone file; root.zone is the root zone "."."""
    out = []
    for path in sorted(directory.glob("*.zone")):
        stem = path.name[: -len(".zone")]
        out.append(("." if stem == "root" else stem, path))
    return out


def knot_config(rundir: Path, port: int, zones: list[tuple[str, Path]]) -> str:
    """Return a knotd configuration serving `zones` from their files on loopback only."""
    lines = [
        "server:",
        f'    rundir: "{rundir}"',
        f"    listen: [ 127.0.0.1@{port}, ::1@{port} ]",
        "    udp-workers: 2",
        "    tcp-workers: 2",
        "    background-workers: 1",
        "log:",
        "  - target: stderr",
        "    any: info",
        "database:",
        f'    storage: "{rundir / "db"}"',
        "template:",
        "  - id: default",
        f'    storage: "{rundir}"',
        # Zones are read-only fixtures: never write them back, never keep a journal.
        "    zonefile-sync: -1",
        "    zonefile-load: whole",
        "    journal-content: none",
        "    semantic-checks: off",
        "zone:",
    ]
    for name, path in zones:
        lines += [f'  - domain: "{name}"', f'    file: "{path}"']
    return "\n".join(lines) + "\n"


def _soa_ok(port: int, zone: str) -> bool:
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    with contextlib.suppress(OSError, dns.exception.DNSException):
        reply = dns.query.udp(query, "127.0.0.1", timeout=0.5, port=port)
        return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)
    return False


def wait_zones(port: int, zones: list[tuple[str, Path]], proc, log: Path, timeout: float = 20.0) -> None:
    """Wait until knotd answers the SOA of every zone; fail the test with its log otherwise."""
    pending = [name for name, _ in zones]
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        pending = [z for z in pending if not _soa_ok(port, z)]
        if pending:
            time.sleep(0.05)
    if pending:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        pytest.fail(f"knotd did not load zones {pending} (exit={proc.poll()}):\n{tail}")


@pytest.fixture(scope="session")
def knot_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    """Run knotd for the whole test session on a free loopback port; stop it by PID afterwards."""
    knotd = require_binary("knotd")
    zones = zone_files()
    if not any(name == "." for name, _ in zones):
        pytest.fail(f"{ZONES_DIR}/root.zone is missing: names outside the test zones would be REFUSED")
    rundir = tmp_path_factory.mktemp("knot")
    (rundir / "db").mkdir()
    port = free_port()
    conf = rundir / "knot.conf"
    conf.write_text(knot_config(rundir, port, zones))
    log = rundir / "knotd.log"
    with running([knotd, "-c", str(conf)], log) as proc:
        wait_zones(port, zones, proc, log)
        yield DnsServer(port, tuple(name for name, _ in zones), log)


class SilentServer:
    """Loopback UDP+TCP sockets on one port that accept queries and never answer."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.port = free_port(family, host)
        self.host = host
        self.queries = 0                      # datagrams and connections seen (for assertions)
        self._udp = socket.socket(family, socket.SOCK_DGRAM)
        self._udp.bind((host, self.port))
        self._tcp = socket.socket(family, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((host, self.port))
        self._tcp.listen(16)
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name="silent-dns", daemon=True)
        self._thread.start()

    @property
    def nameserver(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def settings(self, **extra: object) -> dict:
        return {"nameservers": [self.nameserver], **extra}

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._udp, selectors.EVENT_READ)
        sel.register(self._tcp, selectors.EVENT_READ)
        while not self._stop.is_set():          # bounded by close(): it sets the event
            for key, _ in sel.select(timeout=0.1):
                with contextlib.suppress(OSError):
                    if key.fileobj is self._udp:
                        self._udp.recvfrom(65535)      # read and drop
                    else:
                        conn, _ = self._tcp.accept()   # keep it open, say nothing
                        self._held.append(conn)
                    self.queries += 1
        sel.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for s in (*self._held, self._udp, self._tcp):
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def silent_dns() -> Iterator[SilentServer]:
    """A DNS "server" on 127.0.0.1 that swallows every query (for temperror tests)."""
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def zone_text(records: list[tuple[str, str, str]], ttl: int = 300) -> str:
    """A root zone ("."): SOA, NS and the given (name, type, rdata text) records."""
    lines = [f"$TTL {ttl}", ". SOA ns. hostmaster. 1 3600 600 86400 300", ". NS ns.", "ns. A 127.0.0.1"]
    lines += [f"{name.rstrip('.')}. {ttl} IN {rdtype} {rdata}" for name, rdtype, rdata in records]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def serve_records(records: list[tuple[str, str, str]], workdir: Path) -> Iterator[DnsServer]:
    """Run knotd serving `records` as the root zone (any other name NXDOMAIN); stopped by PID."""
    knotd = require_binary("knotd")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir(exist_ok=True)
    zone = workdir / "root.zone"
    zone.write_text(zone_text(records))
    port = free_port()
    conf = workdir / "knot.conf"
    conf.write_text(knot_config(workdir, port, [(".", zone)]))
    log = workdir / "knotd.log"
    with running([knotd, "-c", str(conf)], log) as proc:
        wait_zones(port, [(".", zone)], proc, log)
        yield DnsServer(port, (".",), log)
