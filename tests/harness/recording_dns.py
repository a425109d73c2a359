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


class RecordingDns:
    """`queries` lists (name without final dot, type) in arrival order."""

    def __init__(self, records: dict[tuple[str, str], list[str]] | None = None) -> None:
        self.records = {(n.lower().rstrip("."), t.upper()): v for (n, t), v in (records or {}).items()}
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="recording-dns", daemon=True)

    @property
    def nameserver(self) -> str:
        """The value for settings.dns.nameservers."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "RecordingDns":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sock.close()

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
