#!/usr/bin/env python3
"""Latency of a `dnslists` condition with several lists on a cold cache, asked one after the
other (`settings.dns.early: false`) or together (the default), issue 23.

    .venv/bin/python bench/dnslists_latency.py [-n 20] [--lists 4] [--delay 0.05]

A loopback DNS server that answers every query after `delay` seconds
(tests/harness/delaying_dns.py) serves `--lists` DNS lists; every client address is new (a
cold cache) and listed only on the last list, so the walk reads every list. Each client runs
CONNECT/HELO/MAIL/RCPT through a Session (no milter socket); the time of the RCPT step is
printed as median and p90 per mode, with the queries per client and the most queries the
server held unanswered at once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "milter"))
sys.path.insert(0, str(ROOT))

from aclmilter.runtime import Runtime  # noqa: E402
from aclmilter.session import Session  # noqa: E402
from tests.harness.delaying_dns import ZONE, DelayingDns  # noqa: E402

POLICY = """
settings:
  primary_hostname: mx.bench.invalid
  dns: {{nameservers: ["{ns}"], timeout: 2, lifetime: 3, budget: 10, early: {early}}}
acl:
  rcpt:
    - deny:
        dnslists: "{lists}"
        message: "550 listed at $dnslist_domain"
    - accept
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="clients per mode")
    ap.add_argument("--lists", type=int, default=4)
    ap.add_argument("--delay", type=float, default=0.05)
    a = ap.parse_args()
    names = [f"l{i}.bl.{ZONE}" for i in range(1, a.lists + 1)]
    clients = {mode: [f"10.{m}.{i // 250}.{i % 250 + 1}" for i in range(a.n)] for m, mode in enumerate(("seq", "early"))}
    records = {f"{'.'.join(reversed(ip.split('.')))}.{names[-1]}": ["127.0.0.2"]
               for ips in clients.values() for ip in ips}
    with tempfile.TemporaryDirectory() as tmp, DelayingDns(a.delay, a_records=records) as dns:
        for mode, ips in clients.items():
            policy = Path(tmp) / f"{mode}.yaml"
            policy.write_text(POLICY.format(ns=dns.nameserver, early=str(mode == "early").lower(),
                                            lists=" : ".join(names)))
            rt = Runtime(policy)
            rt.load()
            dns.reset()
            times, answers = [], set()
            for ip in ips:
                s = Session(rt)
                s.connect("client.example", "inet", ip, 4000, {})
                s.helo("client.example", {})
                s.mail("<a@example.org>", [], {})
                t0 = time.monotonic()
                r = s.rcpt("<b@ours.example>", [], {})
                times.append((time.monotonic() - t0) * 1000)
                answers.add(f"{r.action.name} {r.reply.lines[0] if r.reply else ''}")
                s.close()
            rt.current().services.get("dns").close()
            times.sort()
            print(f"{mode:5s} {a.lists} lists, {a.delay * 1000:.0f} ms per answer: RCPT median "
                  f"{statistics.median(times):.1f} ms, p90 {times[int(0.9 * (len(times) - 1))]:.1f} ms; "
                  f"{len(dns.queries) / len(ips):.1f} queries per client, at most {dns.max_outstanding} "
                  f"outstanding; answers {sorted(answers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
