#!/usr/bin/env python3
"""Cold-cache DNS latency of the auth policy (SPF + DKIM + DMARC + history), issue 23.

    .venv/bin/python bench/cold_dns.py [-n 30] [--delay 0.05] [--kind unix|inet]

Every message comes from a new domain (nothing cached), through a loopback DNS server that
answers each query after `--delay` seconds (tests/harness/delaying_dns.py: the sender
domain's SPF record includes two more records; a DKIM key; a DMARC record). One message at a
time goes over the milter protocol to `aclmilter serve` (started here, stopped by PID), once
with `settings.dns.early: true` and once with `false`. Reported per message: the time from
sending MAIL FROM to the end-of-message answer (the milter protocol alone: with no milter
this time is zero, so nothing is subtracted), the queries the DNS server received and the
rounds ("waves") they came in. The dependency-chain limit is three answers: the sender's SPF
record, then its includes; the DKIM key and the DMARC record do not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.dmarc.ctxhelp import PSL, message, sign, split_message  # noqa: E402
from tests.harness.aclmilterd import AclMilterd  # noqa: E402
from tests.harness.delaying_dns import ZONE, DelayingDns  # noqa: E402
from tests.harness.milterclient import MilterClient  # noqa: E402

POLICY = """
settings:
  primary_hostname: mx.bench.invalid
  authserv_id: mx.bench.invalid
  dmarc_tld_file: {psl}
  dmarc_history_file: {history}
  dns: {{nameservers: ["{ns}"], timeout: 2, lifetime: 5, budget: 12, early: {early}}}
acl:
  data:
    - deny:
        spf: fail
        message: "550 5.7.1 SPF fail"
    - deny:
        dmarc_status: reject
        message: "550 5.7.1 DMARC reject"
    - accept
"""


def run(early: bool, n: int, delay: float, kind: str, work: Path, dns: DelayingDns, tag: str) -> dict:
    policy = work / f"auth-{early}.yaml"
    policy.write_text(POLICY.format(psl=PSL, ns=dns.nameserver, early=str(early).lower(),
                                    history=work / f"history-{early}"))
    msgs = []
    for i in range(n):
        domain = f"{tag}{int(early)}x{i}.{ZONE}"
        raw = sign(message(from_=f"Alice <alice@{domain}>"), domain=domain)
        msgs.append((domain, *split_message(raw)))
    latencies, queries, waves = [], [], []
    with AclMilterd(policy, kind) as milter:
        with MilterClient(milter.client_spec) as client:
            for domain, headers, body in msgs:
                client.connect("mx.sender.example", "4", 4000, "192.0.2.25")
                client.helo("mx.sender.example")
                before = len(dns.queries)
                started = time.monotonic()
                answer = client.message(f"<alice@{domain}>", ["<bob@ours.example>"], headers, body,
                                        macros={"eom": {"i": "Q1"}})
                latencies.append(time.monotonic() - started)
                if answer.refused:
                    raise SystemExit(f"{domain}: refused {answer}")
                queries.append(len(dns.queries) - before)
                waves.append(dns.waves(before))
                client.abort()
                client.quit_nc()
    return {"early": early, "median_ms": 1000 * statistics.median(latencies),
            "p90_ms": 1000 * sorted(latencies)[int(0.9 * (len(latencies) - 1))],
            "queries": statistics.mean(queries), "waves": statistics.median(waves)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30, help="messages per mode")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds before each DNS answer")
    ap.add_argument("--kind", choices=("unix", "inet"), default="unix")
    ap.add_argument("--trials", type=int, default=1, help="alternating trials of both modes")
    args = ap.parse_args(argv)
    print(f"delay {args.delay * 1000:.0f} ms per answer; dependency-chain limit "
          f"{3 * args.delay * 1000:.0f} ms (3 answers); {args.n} messages per mode, {args.kind} socket")
    with tempfile.TemporaryDirectory(prefix="colddns-") as tmp, DelayingDns(args.delay) as dns:
        for trial in range(args.trials):
            for early in (False, True):
                r = run(early, args.n, args.delay, args.kind, Path(tmp), dns, f"t{trial}m")
                print(f"early={str(r['early']).lower():5} added median {r['median_ms']:6.1f} ms  "
                      f"p90 {r['p90_ms']:6.1f} ms  queries/msg {r['queries']:.1f}  waves/msg {r['waves']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
