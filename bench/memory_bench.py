#!/usr/bin/env python3
"""Memory of a real `aclmilter serve`: big messages, and a soak with distinct sender domains.

    .venv/bin/python bench/memory_bench.py big  [--size-mb 50] [--concurrent 5 --concurrent-mb 20]
                                                [--daemon-pythonpath OLD_CHECKOUT/milter]
    .venv/bin/python bench/memory_bench.py soak [--minutes 30] [--rate 30] [--csv FILE]

`big` starts the daemon (DKIM + DMARC + DCC policy, loopback knotd, in-process fake dccifd),
warms it up, then for each case resets the peak RSS (/proc/PID/clear_refs) and prints the
peak growth over the RSS before the case: one message of each kind (unsigned text, signed
relaxed text, signed whitespace-heavy, signed base64), then N concurrent signed messages.
Every signed case must come back with `dkim=pass` (checked), so the hash was really computed.

`soak` sends messages whose sender domain, HELO and client address differ every time (SPF,
DKIM, DMARC lookups: the DNS and SPF caches fill with names never seen again), at a fixed rate
over two connections, samples RSS every 10 s and prints the growth over the last third of the
run (the last 10 minutes of a 30-minute soak). See bench/RESULTS.md for results.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from localdns import with_local_dns  # noqa: E402

from tests.fixtures.dmarc.ctxhelp import PSL  # noqa: E402
from tests.harness.aclmilterd import AclMilterd  # noqa: E402
from tests.harness.bigmail import HEADERS, dkim_signature, make_body, peak, reset_peak, rss  # noqa: E402
from tests.harness.fake_dccifd import FakeDccifd  # noqa: E402
from tests.harness.milterclient import MilterClient  # noqa: E402
from tests.harness.postfix import world_traversable_dir  # noqa: E402

POLICY = """
settings:
  authserv_id: mx.bench.invalid
  primary_hostname: mx.bench.invalid
  dmarc_tld_file: {psl}
  dmarc_history_file: {history}
  {dcc}
acl:
  mail:
    - warn:
        spf: fail
        log_message: "SPF fail for $sender_address"
    - accept
  data:
    {dcc_rule}
    - warn:
        dmarc_status: "!accept"
        log_message: "DMARC $dmarc_status for $dmarc_used_domain"
    - warn:
        add_header: "X-Bench-DKIM: $dkim_verify_status $dkim_signers"
    - accept
"""

MiB = 1 << 20


def _policy(work: Path, dcc_address: str | None) -> Path:
    path = work / "memory-policy.yaml"
    path.write_text(POLICY.format(
        psl=PSL, history=work / "dmarc.dat",
        dcc=f"dccifd_address: {dcc_address}" if dcc_address else "",
        dcc_rule='- warn: {dcc: "*"}' if dcc_address else ""))
    return path


def _send(spec: str, body: bytes, signed: bool, sender_domain: str = "pass.dmarcx", helo: str = "client.example.org",
          ip: str = "192.0.2.7") -> str:
    headers = list(HEADERS)
    if sender_domain != "pass.dmarcx":
        headers = [(n, v.replace("pass.dmarcx", sender_domain)) for n, v in headers]
    if signed:
        headers.insert(0, dkim_signature(headers, body))
    with MilterClient(spec, timeout=300) as client:
        client.connect(helo, "4", 4711, ip)
        client.helo(helo)
        ans = client.message(f"alice@{sender_domain}", ["bob@rcpt.invalid"], headers, body)
    return dict(ans.headers_added()).get("X-Bench-DKIM", f"(no header: {ans.action})")


def big(a: argparse.Namespace) -> int:
    work = world_traversable_dir("aclm-membench-")
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeDccifd.unix(work / "dccifd"))
        policy = stack.enter_context(with_local_dns(_policy(work, fake.address), work))
        env = None
        if a.daemon_pythonpath:   # the baseline: an older checkout's milter/ directory
            env = {**os.environ, "PYTHONPATH": a.daemon_pythonpath}
        daemon = stack.enter_context(AclMilterd(policy, workdir=work, env=env))
        pid = daemon.pid
        assert pid is not None
        print(f"warm-up: {_send(daemon.client_spec, make_body('text', 2 * MiB), True)}; RSS {rss(pid) / MiB:.1f} MiB")
        size = a.size_mb * MiB
        cases = [("unsigned text", "text", False), ("signed relaxed text", "text", True),
                 ("signed whitespace-heavy", "whitespace", True), ("signed base64", "base64", True)]
        for label, kind, signed in cases:
            body = make_body(kind, size)
            base = rss(pid)
            reset_peak(pid)
            t0 = time.monotonic()
            verdict = _send(daemon.client_spec, body, signed)
            dt = time.monotonic() - t0
            fake.requests.clear()
            ok = verdict.startswith("pass") if signed else verdict.startswith("none")
            print(f"{label:26s} {len(body) / MiB:6.1f} MiB  peak growth {(peak(pid) - base) / MiB:6.1f} MiB  "
                  f"{dt:5.1f} s  dkim={verdict}{'' if ok else '  UNEXPECTED'}")
        n, each = a.concurrent, a.concurrent_mb * MiB
        bodies = [make_body(kind, each) for kind in ("text", "whitespace", "base64", "text", "whitespace")[:n]]
        verdicts: list[str] = []
        base = rss(pid)
        reset_peak(pid)
        t0 = time.monotonic()
        threads = [threading.Thread(target=lambda b=b: verdicts.append(_send(daemon.client_spec, b, True)))
                   for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=900)
        fake.requests.clear()
        print(f"{n} concurrent signed     {n} x {each / MiB:.0f} MiB  peak growth {(peak(pid) - base) / MiB:6.1f} MiB  "
              f"{time.monotonic() - t0:5.1f} s  dkim={sorted(set(verdicts))}")
        print(f"RSS after: {rss(pid) / MiB:.1f} MiB")
    return 0


def soak(a: argparse.Namespace) -> int:
    work = world_traversable_dir("aclm-soak-")
    body = b"Soak test message.\r\n" * 40
    with contextlib.ExitStack() as stack:
        policy = stack.enter_context(with_local_dns(_policy(work, None), work))
        daemon = stack.enter_context(AclMilterd(policy, workdir=work))
        pid = daemon.pid
        assert pid is not None
        stop = time.monotonic() + a.minutes * 60
        counter = iter(range(10 ** 9))
        lock = threading.Lock()
        sent, errors = [0], [0]

        def worker() -> None:
            gap = 2.0 / a.rate          # two workers share the rate
            while time.monotonic() < stop:
                t0 = time.monotonic()
                with lock:
                    i = next(counter)
                domain = f"d{i}.soak{int(time.time()) % 100000}.example"
                try:
                    _send(daemon.client_spec, body, False, domain, f"h{i}.example.net",
                          f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
                    sent[0] += 1
                except Exception:  # noqa: BLE001 - count and go on
                    errors[0] += 1
                time.sleep(max(0.0, gap - (time.monotonic() - t0)))

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        samples: list[tuple[float, int]] = []
        t_start = time.monotonic()
        csv = open(a.csv, "w") if a.csv else None
        while time.monotonic() < stop:
            samples.append((time.monotonic() - t_start, rss(pid)))
            line = f"{samples[-1][0]:7.0f} s  RSS {samples[-1][1] / MiB:6.1f} MiB  sent {sent[0]}  errors {errors[0]}"
            print(line, flush=True)
            if csv:
                csv.write(f"{samples[-1][0]:.0f},{samples[-1][1]},{sent[0]},{errors[0]}\n")
                csv.flush()
            time.sleep(10)
        for t in threads:
            t.join(timeout=60)
        samples.append((time.monotonic() - t_start, rss(pid)))
        third = samples[-1][0] * 2 / 3
        at_third = next(r for s, r in samples if s >= third)
        last = samples[-1][1]
        print(f"messages {sent[0]}, errors {errors[0]}; RSS start {samples[0][1] / MiB:.1f} MiB, at 2/3 "
              f"{at_third / MiB:.1f} MiB, end {last / MiB:.1f} MiB, max {max(r for _, r in samples) / MiB:.1f} MiB; "
              f"growth over the last third {100 * (last - at_third) / at_third:+.2f} %")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("big")
    b.add_argument("--size-mb", type=int, default=50)
    b.add_argument("--concurrent", type=int, default=5)
    b.add_argument("--concurrent-mb", type=int, default=20)
    b.add_argument("--daemon-pythonpath", help="run the daemon on another checkout's milter/ (baseline)")
    s = sub.add_parser("soak")
    s.add_argument("--minutes", type=float, default=30)
    s.add_argument("--rate", type=float, default=30, help="messages per second (two connections)")
    s.add_argument("--csv")
    a = ap.parse_args()
    return big(a) if a.mode == "big" else soak(a)


if __name__ == "__main__":
    sys.exit(main())
