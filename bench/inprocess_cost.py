#!/usr/bin/env python3
"""In-process cost of aclmilter's Python per message: glue + session + policy, no sockets.

    .venv/bin/python bench/inprocess_cost.py [--policy FILE] [--part all|conn|helo|message] [-n N]

Drives `service.glue.AclMilter` with a fake libmilter context (the unit tests' FakeCtx) the
way Postfix does for one message per connection, after 20 warm-up messages (the SPF outcome
is then cached). DNS goes to a private loopback knotd (bench/localdns.py). Prints µs per
iteration. Wall time is noisy on a shared host; for a repeatable number count instructions:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/inprocess_cost.py -n 0   # and again with -n 200

and divide the difference of the two "Collected" totals by 200.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import milter  # noqa: E402

from aclmilter.runtime import Runtime  # noqa: E402
from aclmilter.service import glue  # noqa: E402
from localdns import with_local_dns  # noqa: E402
from tests.harness.milterctx import FakeCtx, MtaDriver  # noqa: E402

CONNECT_MACROS = {"{client_addr}": "127.0.0.1", "j": "mx.test", "{daemon_name}": "smtpd"}


def open_connection(config: glue.GlueConfig) -> MtaDriver:
    m = MtaDriver(glue.AclMilter(config), FakeCtx(dict(CONNECT_MACROS)))
    m.negotiate([milter.CURR_ACTS, 0x1FFFFF, 0, 0])
    m.connect("mail.bench.example", socket.AF_INET, ("127.0.0.1", 4000))
    return m


def message(m: glue.AclMilter) -> None:
    m.envfrom("<foo@bench.example>")
    m.envrcpt("<bar@bench.example>")
    m.eom()


def whole(first: glue.AclMilter) -> None:
    m = open_connection(first.config)
    m.hello("localhost")
    message(m)
    m.close()


PARTS = {"all": whole, "conn": lambda m: open_connection(m.config).close(),
         "helo": lambda m: m.hello("localhost"), "message": message}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", type=Path, default=ROOT / "policies" / "default.yaml")
    ap.add_argument("--part", choices=sorted(PARTS), default="all")
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--profile", type=int, metavar="K", default=0,
                    help="instead of timing, print the K functions with most own time (cProfile), "
                         "with calls per iteration")
    ap.add_argument("--cumulative", action="store_true", help="with --profile: sort by cumulative time")
    a = ap.parse_args()
    logging.disable(logging.INFO)          # the daemon's bench runs log at warning
    with tempfile.TemporaryDirectory() as tmp, with_local_dns(a.policy, Path(tmp)) as policy:
        runtime = Runtime(policy, monitor=False)
        runtime.load()
        m = open_connection(glue.GlueConfig(runtime, unix_socket=True))
        m.hello("localhost")
        for _ in range(20):
            whole(m)
            message(m)
        step = PARTS[a.part]
        if a.profile:
            return _profile(step, m, a.n, a.profile, a.cumulative)
        started = time.perf_counter()
        for _ in range(a.n):
            step(m)
        if a.n:
            print(f"{a.part}: {(time.perf_counter() - started) / a.n * 1e6:.1f} us per iteration "
                  f"({a.n} iterations, {a.policy.name})")
    return 0


def _profile(step, m: glue.AclMilter, n: int, top: int, sort_cum: bool = False) -> int:  # a PARTS entry
    """Run `step` n times under cProfile; print the `top` functions by own time, calls per iteration."""
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        step(m)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[1] for v in stats.stats.values())
    print(f"{total / max(n, 1):.1f} Python calls per iteration")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3 if sort_cum else 2], reverse=True)[:top]
    for (file, line, func), (_cc, calls, own, cum, _callers) in rows:
        print(f"{calls / max(n, 1):7.2f} calls {own / max(n, 1) * 1e6:7.2f} us own {cum / max(n, 1) * 1e6:7.2f} us cum"
              f"  {Path(file).name}:{line}({func})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
