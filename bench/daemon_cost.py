#!/usr/bin/env python3
"""Instructions per message of the whole `aclmilter serve` process, counted by callgrind.

    .venv/bin/python bench/daemon_cost.py [--policy bench/auth-policy.yaml] [--signed] \\
        [-n 300] [-c 10] [--kind unix|inet] [--log-level info]

bench/auth_cost.py counts one message's checks in process; this counts everything the daemon
does for it under load: libmilter's threads and pymilter's callbacks, the hand-offs to the
early-DNS thread and the log writer, the log line, the history write, the GIL passing between
threads. The daemon runs under `valgrind --tool=callgrind` (instruction counts are the same
whatever else the machine does, unlike CPU seconds on a shared machine); after a warm-up
(DNS cached, keys parsed) the counters are zeroed with `callgrind_control -z`, the load is
sent over the milter protocol (bench/milterload.py, from 127.0.0.1, signed mail with
--signed), and `callgrind_control -d` dumps the counts: the total over all threads divided by
the messages answered is the number printed. DNS is a private loopback knotd (bench/localdns.py).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from localdns import with_local_dns  # noqa: E402
from milterload import Mail, run  # noqa: E402

from tests.harness.aclmilterd import AclMilterd  # noqa: E402
from tests.harness.postfix import world_traversable_dir  # noqa: E402

_TOTAL = re.compile(r"^(?:summary|totals):\s*(\d+)", re.M)


def _control(*args: str) -> str:
    return subprocess.run(["callgrind_control", *args], capture_output=True, text=True, timeout=300,
                          check=True).stdout


def _instructions(out_dir: Path) -> int:
    """Sum of the Ir totals of the dump files callgrind wrote after the zeroing."""
    total = 0
    for f in sorted(out_dir.glob("callgrind.out.*")):
        if f.name.endswith(".1") or ".1-" in f.name:       # the explicit dump after the load
            m = _TOTAL.search(f.read_text(errors="replace"))
            total += int(m.group(1)) if m else 0
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", type=Path, default=ROOT / "bench" / "auth-policy.yaml")
    ap.add_argument("--signed", action="store_true", help="DKIM-signed mail (bench/milterload.py --signed)")
    ap.add_argument("--kind", default="unix", choices=("unix", "inet"))
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("-c", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--log-level", default="info", help="the daemon's; info = one line per message")
    a = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        ap.error("valgrind is not installed (apt install valgrind)")
    mail = Mail.signed() if a.signed else Mail.plain()
    with contextlib.ExitStack() as stack:
        work = world_traversable_dir("aclmilter-cg-")
        stack.callback(shutil.rmtree, work, True)
        policy = stack.enter_context(with_local_dns(a.policy, work))
        out_dir = work / "cg"
        out_dir.mkdir()
        prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.out.%p"]
        daemon = AclMilterd(policy, a.kind, workdir=work, prefix=prefix,
                            extra_args=["--log-level", a.log_level]).start(timeout=300)
        stack.callback(daemon.stop)
        warm = run(daemon.client_spec, a.warmup, min(a.c, a.warmup), 1, False, mail)
        if warm["error_count"]:
            raise SystemExit(f"warm-up failed: {warm['errors']}")
        _control("-z", str(daemon.pid))
        t0 = time.monotonic()
        r = run(daemon.client_spec, a.n, a.c, 1, False, mail)
        seconds = time.monotonic() - t0
        _control("-d", str(daemon.pid))
        time.sleep(1)
        total = _instructions(out_dir)
        log = daemon.log()
    if r["error_count"] or not r["n"]:
        raise SystemExit(f"load failed: {r['errors']}")
    if a.signed and a.log_level == "info" and "dmarc=pass" not in log:
        raise SystemExit("the daemon logged no dmarc=pass: the bench is not measuring authentication")
    print(f"{a.policy.name} {a.kind} signed={a.signed} log={a.log_level} n={r['n']} c={a.c}: "
          f"{total / r['n'] / 1e6:.3f} M instructions per message (all threads; {seconds:.0f} s under valgrind), "
          f"answers {r['answers']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
