#!/usr/bin/env python3
"""How long a crashed worker is gone: crash one with libmilter's macro bug, time the return.

    .venv/bin/python bench/worker_restart.py [-n 20] [--workers 1|2]

Starts `aclmilter serve --supervise --workers N` on a private unix socket
(tests/fixtures/service-protocol.yaml), then n times: sends the known crash packets
(tests/harness/milterfuzz.crash_frames), and measures
- death -> replacement serving: from the master's "exited with" log line to the new
  worker's "serving (pid ...)" line (log time stamps, ms resolution);
- crash -> next answered message: from sending the crash packet until a clean message gets
  its end-of-message answer (client side; with one worker this is the outage, with two the
  other worker answers meanwhile).
Prints the median and the maximum of both. The daemon is stopped by its PID.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import milterfuzz  # noqa: E402
from tests.harness.aclmilterd import AclMilterd  # noqa: E402
from tests.harness.milterclient import MilterClient  # noqa: E402

POLICY = ROOT / "tests" / "fixtures" / "service-protocol.yaml"
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) aclmilter\[\d+\] \w+ (.*)$", re.M)


def stamps(log: str, pattern: str) -> list[float]:
    rx = re.compile(pattern)
    out = []
    for when, text in STAMP.findall(log):
        if rx.search(text):
            out.append(dt.datetime.strptime(when, "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def clean_message(spec: str) -> bool:
    try:
        with MilterClient(spec, timeout=10) as mc:
            mc.connect("[203.0.113.7]", "4", 4711, "203.0.113.7", {"v": "Postfix 3.7"})
            mc.helo("client.example.org")
            ans = mc.message("<a@example.org>", ["<b@example.test>"], [("Subject", "x")], b"x\r\n")
            return ans.action in ("continue", "accept")
    except (OSError, RuntimeError, ConnectionError):
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="crashes (default 20)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aclmilter-restart-"))
    work.chmod(0o755)
    outage: list[float] = []
    d = AclMilterd(POLICY, "unix", workdir=work, workers=args.workers, extra_args=["--supervise"])
    with d:
        d.wait_log(r"serving \(pid \d+\)", count=args.workers)
        for i in range(1, args.n + 1):
            t0 = time.monotonic()
            milterfuzz.send_case(d.client_spec, [*milterfuzz.crash_frames(13), milterfuzz.connect_frame()])
            for _ in range(2000):                       # bounded: 2000 tries
                if clean_message(d.client_spec):
                    break
                time.sleep(0.005)
            outage.append(time.monotonic() - t0)
            d.wait_log(r"serving \(pid \d+\)", count=args.workers + i)
        log = d.log()
    shutil.rmtree(work, ignore_errors=True)
    deaths = stamps(log, r"exited with")
    serving = stamps(log, r"serving \(pid")[args.workers:]
    gaps = [s - t for t, s in zip(deaths, serving, strict=False)]   # a run may end between a death and its replacement
    print(f"workers={args.workers} crashes={len(deaths)}/{args.n}")
    print(f"death -> successor serving: median {statistics.median(gaps) * 1000:.0f} ms, "
          f"max {max(gaps) * 1000:.0f} ms")
    print(f"crash packet -> next clean message answered: median {statistics.median(outage) * 1000:.0f} ms, "
          f"max {max(outage) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
