#!/usr/bin/env python3
"""Memory and CPU of ARC verification of a big sealed message: the body joined to the header
block for dkimpy (before r25) against the AMS body hashes streamed from the body spool.

    PYTHONPATH=milter .venv/bin/python bench/arc_body.py [--size-mb 20] [--trials 3]

Two ARC sets (list.arcx, fwd.arcx) over a whitespace-heavy text body held in a BodySpool
(spooled to its temporary file, as a big message is in the service). Prints, per way, the
median Python heap peak (tracemalloc) and process CPU time (a run without tracemalloc);
both ways must say `pass`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dkim  # noqa: E402

from aclmilter.checks.arc import verify_chain  # noqa: E402
from aclmilter.checks.dkim import split_message  # noqa: E402
from aclmilter.state import BodySpool  # noqa: E402
from tests.fixtures.dmarc.ctxhelp import arc_seal, arc_txt as txt, message, sign  # noqa: E402

def measure(fn: Callable[[], str]) -> tuple[str, int, float]:
    """(verdict, heap peak under tracemalloc, CPU seconds of a second run without it)."""
    tracemalloc.start()
    verdict = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    t0 = time.process_time()
    fn()
    return verdict, peak, time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=20)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    line = b"word  word\tword   trailing  \r\n"
    body = line * (args.size_mb * (1 << 20) // len(line))
    raw = arc_seal(arc_seal(sign(message(body=body)), "list.arcx"), "fwd.arcx")
    head, body = split_message(raw)
    del raw
    spool = BodySpool()
    for i in range(0, len(body), 1 << 16):
        spool.write(body[i:i + (1 << 16)])
    del body

    def joined() -> str:        # what arc_check did: header block + spool.read(), dkimpy's arc_verify
        def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
            found = txt(name.decode().rstrip("."))
            return found[0].encode() if found else None
        cv = dkim.arc_verify(head + spool.read(), dnsfunc=dnsfunc)[0]
        return {dkim.CV_Pass: "pass"}.get(cv, "fail")

    def streamed() -> str:
        return verify_chain(head, txt, body=spool.chunks).status.value

    print(f"body {spool.size / (1 << 20):.1f} MiB, spooled={spool.spooled}, {args.trials} trials")
    for name, fn in (("joined", joined), ("streamed", streamed)):
        runs = [measure(fn) for _ in range(args.trials)]
        assert all(v == "pass" for v, _p, _c in runs), runs
        print(f"{name:9s} heap peak {statistics.median(p for _v, p, _c in runs) / (1 << 20):7.1f} MiB  "
              f"CPU {statistics.median(c for _v, _p, c in runs):6.2f} s")


if __name__ == "__main__":
    main()
