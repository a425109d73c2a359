# SPDX-License-Identifier: GPL-3.0-or-later
"""The RFC 7208 test suite as DNS: each YAML document's `zonedata` served by Knot on loopback.

The suite (tests/fixtures/rfc7208/rfc7208-tests.yml, from pyspf's sdist, licence beside it)
describes DNS in its own notation. This module turns one document into a root zone file for
knotd and into the rules Knot cannot express, which `FrontEnd` applies:

- `SPF: ...` entries are served as SPF (type 99) and, unless the name has its own `TXT:`
  entries, as TXT too; `TXT: NONE` means "no TXT records" (the suite's conventions);
- `TIMEOUT` makes queries for that name time out, except for the record types listed before
  it (the driver shipped with the suite walks the list in that order);
- a TXT entry with no strings at all cannot exist in a zone file; it is served as one empty
  string, which SPF also ignores.

`FrontEnd` is a UDP and TCP server on 127.0.0.1 in front of knotd. Modes: `plain` (forward,
drop the TIMEOUT queries), `truncate` (every UDP answer is an empty answer with TC set, so
clients retry over TCP), `servfail` (TIMEOUT queries get SERVFAIL instead of silence).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

SUITE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "rfc7208"
SUITE_FILE = SUITE_DIR / "rfc7208-tests.yml"

_NAME_SAFE = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def load_documents(path: Path = SUITE_FILE) -> list[dict]:
    """The YAML documents of the suite (each: description, tests, zonedata)."""
    import yaml
    with path.open("rb") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def _label(text: str) -> str:
    raw = text.encode("utf-8")
    if raw == b"*":
        return "*"
    return "".join(chr(b) if b in _NAME_SAFE else f"\\{b:03d}" for b in raw)


def zone_name(name: str) -> str:
    """`name` as an absolute owner/target in zone-file syntax (odd octets as \\DDD)."""
    labels = [lab for lab in str(name).rstrip(".").split(".")]
    return ".".join(_label(lab) for lab in labels) + "."


def _string(data: str) -> str:
    out = []
    for b in data.encode("utf-8"):
        if 0x20 <= b < 0x7F and b not in (0x22, 0x5C):
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def _txt_rdata(value: Any) -> str:
    strings = [value] if isinstance(value, str) else list(value)
    if not strings:
        return '""'
    return " ".join(_string(s) for s in strings)


@dataclass
class ZoneData:
    """One document's DNS: zone-file text for knotd and the TIMEOUT rules for the front end."""

    text: str
    #: lower-case name -> record types that still answer (everything else times out)
    timeouts: dict[str, frozenset[str]] = field(default_factory=dict)


def build_zone(zonedata: dict) -> ZoneData:
    """Translate a document's `zonedata` into a root zone and TIMEOUT rules (see module doc)."""
    lines = ["$ORIGIN .", "$TTL 0",
             "@ SOA ns.spf-suite.invalid. hostmaster.spf-suite.invalid. 1 3600 600 86400 0",
             "@ NS ns.spf-suite.invalid."]
    timeouts: dict[str, frozenset[str]] = {}
    for name, entries in (zonedata or {}).items():
        owner = zone_name(name)
        if any(len(lab.encode()) > 63 for lab in str(name).split(".")) or "" in str(name).rstrip(".").split("."):
            continue    # cannot exist in DNS (the suite's driver refuses such queries too)
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        generated: list[str] = []
        seen: set[str] = set()
        for entry in entries:
            if entry == "TIMEOUT":
                timeouts.setdefault(str(name).lower().rstrip("."), frozenset(seen))
                continue
            for rtype, value in entry.items():
                if rtype in ("TXT", "SPF") and value == "NONE":
                    continue       # the driver drops it before the TIMEOUT walk
                seen.add(rtype)
                if rtype in ("TXT", "SPF"):
                    lines.append(f"{owner} {rtype} {_txt_rdata(value)}")
                    if rtype == "SPF" and not has_txt:
                        generated.append(f"{owner} TXT {_txt_rdata(value)}")
                elif rtype == "MX":
                    pref, target = value
                    lines.append(f"{owner} MX {int(pref)} {zone_name(target) if target else '.'}")
                elif rtype in ("PTR", "CNAME"):
                    lines.append(f"{owner} {rtype} {zone_name(value)}")
                elif rtype in ("A", "AAAA"):
                    lines.append(f"{owner} {rtype} {value}")
                else:
                    raise ValueError(f"record type {rtype} of {name} is not supported by the suite harness")
        lines += generated
    return ZoneData("\n".join(lines) + "\n", timeouts)


# ---- the front end -----------------------------------------------------------------------

MODES = ("plain", "truncate", "servfail")


class FrontEnd:
    """UDP+TCP DNS front end on 127.0.0.1 forwarding to knotd (see module doc). Use as a context."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "plain"
        self.timeouts: dict[str, frozenset[str]] = {}
        self.port = 0
        #: what the front end did, by kind: "forwarded-udp", "forwarded-tcp", "truncated",
        #: "silent", "servfail" (tests prove each run exercised what it claims to)
        self.counts: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self._udp: socketserver.ThreadingUDPServer | None = None
        self._tcp: socketserver.ThreadingTCPServer | None = None
        self._threads: list[threading.Thread] = []

    def configure(self, *, upstream_port: int | None = None, mode: str | None = None,
                  timeouts: dict[str, frozenset[str]] | None = None) -> None:
        if upstream_port is not None:
            self.upstream_port = upstream_port
        if mode is not None:
            assert mode in MODES, mode
            self.mode = mode
        if timeouts is not None:
            self.timeouts = dict(timeouts)

    # -- decisions ---------------------------------------------------------------------------
    def _times_out(self, query: dns.message.Message) -> bool:
        if not query.question:
            return False
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        answering = self.timeouts.get(name)
        return answering is not None and dns.rdatatype.to_text(q.rdtype) not in answering

    def _count(self, kind: str) -> None:
        with self._count_lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def answer(self, wire: bytes, over_tcp: bool) -> bytes | None:
        """The reply to one query, or None to stay silent (a timeout)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - a garbled query gets no answer
            return None
        if self._times_out(query):
            if self.mode != "servfail":
                self._count("silent")
                return None
            self._count("servfail")
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply.to_wire()
        if self.mode == "truncate" and not over_tcp:
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.TC
            self._count("truncated")
            return reply.to_wire()
        self._count("forwarded-tcp" if over_tcp else "forwarded-udp")
        return self._forward(wire, over_tcp)

    def _forward(self, wire: bytes, over_tcp: bool) -> bytes | None:
        addr = ("127.0.0.1", self.upstream_port)
        if over_tcp:
            with socket.create_connection(addr, timeout=2) as s:
                s.sendall(struct.pack("!H", len(wire)) + wire)
                return _read_frame(s)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(wire, addr)
            try:
                return s.recv(65535)
            except OSError:
                return None

    # -- servers -----------------------------------------------------------------------------
    def __enter__(self) -> "FrontEnd":
        front = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = front.answer(data, over_tcp=False)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(3)
                for _ in range(100):          # bounded: at most 100 queries per connection
                    try:
                        wire = _read_frame(self.request)
                    except OSError:
                        return
                    if wire is None:
                        return
                    reply = front.answer(wire, over_tcp=True)
                    if reply is None:
                        continue              # a timeout: say nothing, let the client give up
                    self.request.sendall(struct.pack("!H", len(reply)) + reply)

        # UDP and TCP on one port: take a free UDP port, and try again (bounded) if its TCP
        # twin is busy
        for attempt in range(20):
            self._udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
            self.port = self._udp.server_address[1]
            try:
                self._tcp = _tcp_server(self.port, Tcp)
                break
            except OSError:
                self._udp.server_close()
                if attempt == 19:
                    raise
        for server in (self._udp, self._tcp):
            server.daemon_threads = True
            t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self._udp, self._tcp):
            if server is not None:
                server.shutdown()
                server.server_close()
        for t in self._threads:
            t.join(5)

    def settings(self, **extra: object) -> dict:
        """A `settings.dns` mapping that asks this front end only."""
        return {"nameservers": [f"127.0.0.1:{self.port}"], **extra}


def _tcp_server(port: int, handler: type) -> socketserver.ThreadingTCPServer:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    return socketserver.ThreadingTCPServer(("127.0.0.1", port), handler)


def _read_frame(sock: socket.socket) -> bytes | None:
    head = _read_exact(sock, 2)
    if head is None:
        return None
    return _read_exact(sock, struct.unpack("!H", head)[0])


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


@contextlib.contextmanager
def front_end(upstream_port: int) -> Iterator[FrontEnd]:
    with FrontEnd(upstream_port) as fe:
        yield fe
