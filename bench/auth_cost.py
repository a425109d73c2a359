#!/usr/bin/env python3
"""In-process CPU cost of one authenticated message (SPF + DKIM + DMARC + history), issue 23.

    .venv/bin/python bench/auth_cost.py [-n 500] [--profile K] [--cumulative]

Like bench/inprocess_cost.py (the glue driven with the unit tests' fake libmilter context, no
sockets), but each message is DKIM-signed by pass.dmarcx (tests/fixtures/dmarc keys), sent from
192.0.2.25 (in its SPF record), with headers and body, through bench/auth-policy.yaml, DNS
answered by a private loopback knotd with the test zones. After 20 warm-up messages every DNS
answer is cached, so this is the CPU of the checks themselves. Prints µs per message, or with
--profile the K functions with the most own time (calls per message).

CPU time is noisy on a shared machine. Instructions per message are not: the timed loop runs
inside `itertools.starmap` (used nowhere else here), so callgrind can count that loop alone:

    valgrind --tool=callgrind --toggle-collect=starmap_next --callgrind-out-file=/dev/null \
        .venv/bin/python bench/auth_cost.py -n 200

and "Collected" / 200 is the instructions of one message.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import logging
import socket
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import milter  # noqa: E402

from aclmilter.runtime import Runtime  # noqa: E402
from aclmilter.service import glue  # noqa: E402
from inprocess_cost import _profile  # noqa: E402
from localdns import with_local_dns  # noqa: E402
from tests.fixtures.dmarc.ctxhelp import PSL, message, sign, split_message  # noqa: E402
from tests.harness.milterctx import FakeCtx, MtaDriver  # noqa: E402

MACROS = {"{client_addr}": "192.0.2.25", "j": "mx.bench.invalid", "{daemon_name}": "smtpd", "i": "Q1"}
RAW = sign(message(body=b"Hello,\r\n\r\nA short authenticated message.\r\n" * 20))
HEADERS, BODY = split_message(RAW)


def one(config: glue.GlueConfig) -> None:
    # MtaDriver keeps the fake context's protocol stage as libmilter would (header edits only
    # from eom, setsymlist only in negotiate); it costs ~1 us per callback.
    m = MtaDriver(glue.AclMilter(config), FakeCtx(dict(MACROS)))
    m.negotiate([milter.CURR_ACTS, 0x1FFFFF, 0, 0])
    m.connect("mail.pass.dmarcx", socket.AF_INET, ("192.0.2.25", 4000))
    m.hello("mail.pass.dmarcx")
    m.envfrom("<alice@pass.dmarcx>")
    m.envrcpt("<bob@rcpt.invalid>")
    m.data()
    for name, value in HEADERS:
        m.header(name, value)
    m.eoh()
    m.body(BODY)
    m.eom()
    m.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--profile", type=int, metavar="K", default=0)
    ap.add_argument("--cumulative", action="store_true")
    a = ap.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "auth.yaml"
        data = yaml.safe_load((ROOT / "bench" / "auth-policy.yaml").read_text())
        data["settings"].update({"dmarc_history_file": str(Path(tmp) / "history"), "dmarc_tld_file": str(PSL)})
        policy.write_text(yaml.safe_dump(data))
        with with_local_dns(policy, Path(tmp)) as local:
            runtime = Runtime(local, monitor=False)
            runtime.load()
            config = glue.GlueConfig(runtime, unix_socket=True)
            for _ in range(20):
                one(config)
            history = Path(tmp) / f"{policy.stem}-history"      # localdns gives each run its own
            if not history.exists() or "pass.dmarcx" not in history.read_text():
                raise SystemExit("the warm-up messages wrote no DMARC history: the bench is not measuring auth")
            if a.profile:
                return _profile(one, config, a.n, a.profile, a.cumulative)
            started = time.process_time()
            collections.deque(itertools.starmap(one, [(config,)] * a.n), maxlen=0)
            print(f"auth: {(time.process_time() - started) / a.n * 1e3:.3f} ms CPU per message "
                  f"({a.n} messages, connection included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
