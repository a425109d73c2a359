# SPDX-License-Identifier: GPL-3.0-or-later
"""A DNS server on a free loopback UDP port that answers after a delay, for early-lookup
tests and the cold-cache latency bench.

It synthesises an authenticated sender domain for every name under `ZONE` (so each message
can use a new, never-cached domain):

    D                   TXT "v=spf1 include:_spf.D -all"
    _spf.D              TXT "v=spf1 ip4:198.51.100.0/24 include:_spf2.D -all"
    _spf2.D             TXT "v=spf1 ip4:192.0.2.0/24 -all"
    sel1._domainkey.D   TXT the public key of tests/fixtures/dmarc/dkim-sel1.private
    _dmarc.D            TXT "v=DMARC1; p=reject"
    anything else       NXDOMAIN

so SPF is a chain of three dependent answers (the shape of issue 23's measurement), except
that for D starting with `sf` (`to`) the inner include is `servfail.D` (`silent.D`).

and `a_records` (name -> addresses) given at start answer A queries, with a TXT "listed" beside
them (DNS-list tests). A name with a label `servfail` anywhere answers SERVFAIL; one with a label `silent` is never
answered (the client times out). Every answer waits `delay` seconds; queries are answered
concurrently (a heap of due replies, one thread), and the server records every query and the
largest number of queries it held unanswered at once (`max_outstanding`) — the proof that a
client asked independent questions in parallel, without measuring any time.
"""

from __future__ import annotations

import heapq
import socket
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.harness.loopserver import LoopbackServer

ZONE = "cold.test"
KEY_B64 = (Path(__file__).resolve().parent.parent / "fixtures" / "dmarc" / "dkim-sel1.pub.b64").read_text().strip()


def _txt_chunks(text: str) -> str:
    """A TXT rdata text with the string split in 255-byte pieces."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255))


def records_for(name: str) -> list[str] | None:
    """The TXT strings of `name` (None: NXDOMAIN)."""
    labels = name.split(".")
    if not name.endswith("." + ZONE) or len(labels) < 3:
        return None
    base = [label for label in labels[:-2]]
    head = base[0]
    if head == "_spf" and len(base) > 1:
        inner = {"sf": "servfail.", "to": "silent."}.get(base[1][:2], "_spf2.")
        return [f"v=spf1 ip4:198.51.100.0/24 include:{inner}{name.split('.', 1)[1]} -all"]
    if head == "_spf2" and len(base) > 1:
        return ["v=spf1 ip4:192.0.2.0/24 -all"]
    if head == "_dmarc" and len(base) > 1:
        return ["v=DMARC1; p=reject"]
    if head == "sel1" and len(base) > 2 and base[1] == "_domainkey":
        return [f"v=DKIM1; k=rsa; p={KEY_B64}"]
    if head.startswith("_") or len(base) != 1:
        return None
    return [f"v=spf1 include:_spf.{name} -all"]


class DelayingDns(LoopbackServer):
    """Start with `with DelayingDns(delay) as dns:`; `queries` lists (name, type) received."""

    def __init__(self, delay: float = 0.05, a_records: dict[str, list[str]] | None = None) -> None:
        self.delay = delay
        self.a_records = {k.lower(): v for k, v in (a_records or {}).items()}
        self.queries: list[tuple[str, str]] = []
        self.arrivals: list[float] = []      # time.monotonic() of each query, as `queries`
        self.max_outstanding = 0
        super().__init__(socket.SOCK_DGRAM, "delaying-dns")
        self._due: list[tuple[float, int, bytes, tuple]] = []
        self._held = 0                 # queries received, never to be answered (silent)
        self._seq = 0
        self._lock = threading.Lock()

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget the queries seen so far (between two runs of one test)."""
        with self._lock:
            self.queries.clear()
            self.arrivals.clear()
            self.max_outstanding = 0

    def waves(self, since: int = 0) -> int:
        """Rounds of queries from index `since` on: a query that arrives more than half a delay
        after the first query of the current round starts a new round."""
        with self._lock:
            times = self.arrivals[since:]
        rounds, start = 0, None
        for t in times:
            if start is None or t - start > self.delay / 2:
                rounds, start = rounds + 1, t
        return rounds

    def _serve(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                _, _, wire, peer = heapq.heappop(self._due)
                try:
                    self._sock.sendto(wire, peer)
                except OSError:
                    pass
            wait = min(0.05, self._due[0][0] - now) if self._due else 0.05
            self._sock.settimeout(max(wait, 0.001))
            try:
                data, peer = self._sock.recvfrom(4096)
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - garbage is ignored, as a server would
                continue
            q = query.question[0]
            name = q.name.to_text(omit_final_dot=True).lower()
            with self._lock:
                self.queries.append((name, dns.rdatatype.to_text(q.rdtype)))
                self.arrivals.append(time.monotonic())
                if "silent" in name.split("."):
                    self._held += 1
                    continue
                self._seq += 1
                heapq.heappush(self._due, (time.monotonic() + self.delay, self._seq,
                                           self._answer(query, name, q.rdtype).to_wire(), peer))
                self.max_outstanding = max(self.max_outstanding, len(self._due))

    def _answer(self, query: dns.message.Message, name: str, rdtype: int) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if "servfail" in name.split("."):
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        if name in self.a_records:
            addresses = self.a_records[name]
            if rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "A", *addresses))
            elif rdtype == dns.rdatatype.TXT:
                response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "TXT", '"listed"'))
            return response
        texts = records_for(name)
        if texts is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif rdtype == dns.rdatatype.TXT:
            response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "TXT",
                                                       *[_txt_chunks(t) for t in texts]))
        return response
