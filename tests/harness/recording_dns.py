"""A recording DNS server on a free loopback UDP port: answers from a small table (NXDOMAIN
for everything else) and keeps every query it received, to prove which queries code sends.

Real DNS on the wire (dnspython's message codec), one thread, stopped by `stop()`.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.harness.loopserver import LoopbackServer


class RecordingDns(LoopbackServer):
    """`queries` lists (name without final dot, type) in arrival order."""

    def __init__(self, records: dict[tuple[str, str], list[str]] | None = None) -> None:
        self.records = {(n.lower().rstrip("."), t.upper()): v for (n, t), v in (records or {}).items()}
        self.queries: list[tuple[str, str]] = []
        super().__init__(socket.SOCK_DGRAM, "recording-dns", timeout=0.1)
        self._lock = threading.Lock()

    @property
    def nameserver(self) -> str:
        """The value for settings.dns.nameservers."""
        return f"127.0.0.1:{self.port}"

    def names(self) -> list[str]:
        with self._lock:
            return [n for n, _ in self.queries]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - garbage is ignored, like a real server's drop
                continue
            self._sock.sendto(self._answer(query).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        for q in query.question:
            name = q.name.to_text(omit_final_dot=True).lower()
            rdtype = dns.rdatatype.to_text(q.rdtype)
            with self._lock:
                self.queries.append((name, rdtype))
            values = self.records.get((name, rdtype))
            if values:
                reply.answer.append(dns.rrset.from_text_list(q.name, 300, "IN", rdtype, values))
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
        return reply
