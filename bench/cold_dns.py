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

    --cases seq,early,chain,rspamd

adds the peers of bench/peers.py on the same DNS server and the same messages: `chain` is
OpenDKIM -> OpenDMARC -> pyspf-milter driven the way Postfix drives smtpd_milters (each
event to each milter in turn; the content, EOM included, to one milter after the other,
the next one seeing the headers the previous one added), `rspamd` its milter proxy with the
SPF, DKIM and DMARC modules only. The DNS server listens on port 53 of a private 127/8
address, because OpenDMARC and pyspf-milter only read /etc/resolv.conf (a private one here).
"""

from __future__ import annotations

import argparse
import os
import socket
import contextlib
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
from tests.harness.milterclient import Answer, MilterClient  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from peers import PeerChain, Rspamd  # noqa: E402


class Port53Dns(DelayingDns):
    """DelayingDns on port 53 of `host` (a 127/8 address), for resolv.conf readers."""

    def __init__(self, delay: float, host: str) -> None:
        super().__init__(delay)
        self._sock.close()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 53))
        self.host, self.port = host, 53

    @property
    def nameserver(self) -> str:
        return f"{self.host}:53"


class ChainClient:
    """Several milters in a row, driven the way Postfix drives smtpd_milters (see above)."""

    def __init__(self, specs: list[str]) -> None:
        self.clients = [MilterClient(s) for s in specs]

    def __enter__(self) -> "ChainClient":
        return self

    def __exit__(self, *exc: object) -> None:
        for c in self.clients:
            c.close()

    def connect(self, *args: str, macros: dict[str, str] | None = None) -> None:
        """A new milter connection per SMTP session, as Postfix opens them (outside the timing)."""
        for c in self.clients:
            c.open()
            c.connect(*args, macros=macros)

    def helo(self, name: str) -> None:
        for c in self.clients:
            c.helo(name)

    def message(self, sender: str, rcpts: list[str], headers: list[tuple[str, str]], body: bytes,
                macros: dict | None = None) -> Answer:
        m = macros or {}
        for step in ("mail", "rcpt", "data"):
            for c in self.clients:
                ans = (c.mail(sender, macros=m.get("mail")) if step == "mail" else
                       c.rcpt(rcpts[0], macros=m.get("rcpt")) if step == "rcpt" else c.data(macros=m.get("data")))
                if ans.refused:
                    return ans
        seen = list(headers)
        for c in self.clients:
            c.headers(seen)
            c.eoh()
            c.body(body)
            ans = c.eom(macros=m.get("eom"))
            if ans.refused:
                return ans
            seen = [*ans.headers_added(), *seen]
        return ans

    def abort(self) -> None:
        for c in self.clients:
            c.abort()

    def quit_nc(self) -> None:
        """End of the SMTP session: close every connection (Postfix does too; with QUIT_NC one
        of the chain's milters stopped answering the next CONNECT, not looked into)."""
        for c in self.clients:
            c.close()

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


def run(case: str, n: int, delay: float, kind: str, work: Path, dns: Port53Dns, tag: str) -> dict:
    """One case (seq, early: aclmilter with settings.dns.early false/true; chain; rspamd)."""
    early = case == "early"
    msgs = []
    for i in range(n):
        domain = f"{tag}{case}x{i}.{ZONE}"
        raw = sign(message(from_=f"Alice <alice@{domain}>"), domain=domain)
        msgs.append((domain, *split_message(raw)))
    latencies, queries, waves = [], [], []
    with contextlib.ExitStack() as stack:
        if case in ("seq", "early"):
            policy = work / f"auth-{early}.yaml"
            policy.write_text(POLICY.format(psl=PSL, ns=dns.nameserver, early=str(early).lower(),
                                            history=work / f"history-{tag}{early}"))
            client = stack.enter_context(MilterClient(stack.enter_context(AclMilterd(policy, kind)).client_spec))
        else:
            peer = (PeerChain(work / f"{tag}{case}", 53, dns.host, kind, dns_host=dns.host) if case == "chain"
                    else Rspamd(work / f"{tag}{case}", 53, kind, dns_host=dns.host))
            stack.callback(peer.stop)
            peer.start()
            specs = [d.postfix_spec for d in peer.daemons] if isinstance(peer, PeerChain) else [peer.postfix_spec]
            client = stack.enter_context(ChainClient(specs))
        for domain, headers, body in msgs:
            # j: as Postfix sends it (pyspf-milter fails every message without it)
            client.connect("mx.sender.example", "4", 4000, "192.0.2.25", macros={"j": "mx.bench.invalid"})
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
    return {"case": case, "median_ms": 1000 * statistics.median(latencies),
            "p90_ms": 1000 * sorted(latencies)[int(0.9 * (len(latencies) - 1))],
            "queries": statistics.mean(queries), "waves": statistics.median(waves)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30, help="messages per mode")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds before each DNS answer")
    ap.add_argument("--kind", choices=("unix", "inet"), default="unix")
    ap.add_argument("--trials", type=int, default=1, help="alternating trials of every case")
    ap.add_argument("--cases", default="seq,early",
                    help="seq, early = aclmilter auth with settings.dns.early false / true; chain, rspamd: "
                         "the peers (bench/peers.py)")
    args = ap.parse_args(argv)
    print(f"delay {args.delay * 1000:.0f} ms per answer; dependency-chain limit "
          f"{3 * args.delay * 1000:.0f} ms (3 answers); {args.n} messages per mode, {args.kind} socket")
    host = f"127.53.{os.getpid() % 250 + 1}.{int(time.time()) % 250 + 1}"
    with tempfile.TemporaryDirectory(prefix="colddns-") as tmp, Port53Dns(args.delay, host) as dns:
        os.chmod(tmp, 0o755)
        for trial in range(args.trials):
            for case in args.cases.split(","):
                r = run(case, args.n, args.delay, args.kind, Path(tmp), dns, f"t{trial}m")
                print(f"{r['case']:6} added median {r['median_ms']:6.1f} ms  "
                      f"p90 {r['p90_ms']:6.1f} ms  queries/msg {r['queries']:.1f}  waves/msg {r['waves']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
