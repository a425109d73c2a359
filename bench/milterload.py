#!/usr/bin/env python3
"""Direct milter-protocol load: N messages at concurrency C against a running milter.

    .venv/bin/python bench/milterload.py --milter unix:/path|inet:127.0.0.1:PORT -n 2000 -c 20
    .venv/bin/python bench/milterload.py --serve [--policy FILE] [--kind unix|inet] -n 2000 -c 20

Each worker thread holds one milter connection and sends messages the way Postfix does
(macros, CONNECT, HELO, MAIL, RCPT, DATA, headers, EOH, body, EOM, ABORT between messages,
`--per-conn` messages per connection), honouring the NO/NR flags the milter negotiated
(tests/harness/milterclient.py, on the PyPI miltertest codec). `--quickack` sets TCP_QUICKACK
after every read, which hides a milter's delayed-ACK stalls: compare with and without to see
whether the milter still has them. `--serve` starts `aclmilter serve` itself (its policy
resolving through a private loopback knotd, bench/localdns.py) and reports its CPU seconds
per message. Prints msg/s, latency percentiles and answer counts.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.milterclient import MilterClient  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from localdns import with_local_dns  # noqa: E402

HEADERS = [("Received", "from client.example.org (client.example.org [203.0.113.7]) by mx"),
           ("From", "Alice <alice@example.org>"), ("To", "<bob@example.test>"),
           ("Subject", "load test message"), ("Date", "Sat, 21 Nov 2026 12:00:00 +0000"),
           ("Message-ID", "<load@example.org>")]
BODY = (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n" * 12)
CONNECT_MACROS = {"j": "mx.bench.example", "v": "Postfix 3.7", "{daemon_name}": "mx",
                  "{daemon_addr}": "127.0.0.1", "{daemon_port}": "25",
                  "{client_addr}": "203.0.113.7", "{client_port}": "4711"}


class Mail:
    """What the load sends: the client address, the envelope sender and the messages (headers,
    body), used in turn."""

    def __init__(self, client_addr: str, sender: str, messages: list[tuple[list[tuple[str, str]], bytes]]) -> None:
        self.client_addr, self.sender, self.messages = client_addr, sender, messages
        self.macros = {**CONNECT_MACROS, "{client_addr}": client_addr}

    @classmethod
    def plain(cls) -> "Mail":
        return cls("203.0.113.7", "<alice@example.org>", [(HEADERS, BODY)])

    @classmethod
    def signed(cls, count: int = 200, size: int = 1000) -> "Mail":
        """DKIM-signed mail from bench.example sent from 127.0.0.1 (SPF, DKIM and DMARC pass
        against bench/zones), as bench/signed_source.py sends it through Postfix."""
        import signed_source
        out = []
        for raw in signed_source.signed_messages(count, size):
            text = raw[:-3]                               # the SMTP end-of-data dot
            head, _, body = text.partition(b"\r\n\r\n")
            fields: list[tuple[str, str]] = []
            for line in head.decode().split("\r\n"):
                if line[:1] in (" ", "\t"):
                    fields[-1] = (fields[-1][0], fields[-1][1] + "\n" + line)   # folding as Postfix passes it
                else:
                    name, _, value = line.partition(":")
                    fields.append((name, value[1:] if value.startswith(" ") else value))
            out.append((fields, body))
        return cls("127.0.0.1", f"<{signed_source.SENDER}>", out)


class QuickAckClient(MilterClient):
    """Sets TCP_QUICKACK after each read (Linux resets it), like a client that never delays ACKs."""

    def _recv(self) -> None:
        super()._recv()
        if self.sock is not None and self.sock.family != socket.AF_UNIX:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def worker(spec: str, todo: list[int], lock: threading.Lock, per_conn: int, quickack: bool,
           lat: list[float], answers: collections.Counter, errors: list[str], mail: Mail) -> None:
    cls = QuickAckClient if quickack else MilterClient
    while True:
        with lock:
            if not todo:
                return
            batch = min(per_conn, len(todo))
            del todo[:batch]
        try:
            mc = cls(spec, timeout=60).open()
            mc.connect(f"[{mail.client_addr}]", "4", 4711, mail.client_addr, mail.macros)
            mc.helo("client.example.org")
            for i in range(batch):
                headers, body = mail.messages[(len(todo) + i) % len(mail.messages)]
                t0 = time.monotonic()
                ans = mc.message(mail.sender, ["<bob@example.test>"], headers, body,
                                 {"rcpt": {"i": f"Q{i}"}, "eom": {"i": f"Q{i}"}})
                lat.append(time.monotonic() - t0)
                answers[ans.action] += 1
                mc.abort()
            mc.close()
        except Exception as exc:  # noqa: BLE001 - count and go on
            errors.append(repr(exc))


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process (and its reaped children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks


def run(spec: str, n: int, c: int, per_conn: int, quickack: bool, mail: Mail | None = None) -> dict:
    todo = list(range(n))
    lock = threading.Lock()
    lat: list[float] = []
    answers: collections.Counter = collections.Counter()
    errors: list[str] = []
    mail = mail or Mail.plain()
    threads = [threading.Thread(target=worker, args=(spec, todo, lock, per_conn, quickack, lat, answers, errors, mail))
               for _ in range(c)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    dt = time.monotonic() - t0
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
    return {"n": len(lat), "seconds": dt, "rate": len(lat) / dt, "p50": pct(0.5), "p90": pct(0.9),
            "p99": pct(0.99), "answers": dict(answers), "errors": errors[:5], "error_count": len(errors)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--milter", help="unix:/path or inet:127.0.0.1:PORT of a running milter")
    ap.add_argument("--serve", action="store_true", help="start aclmilter serve for the run")
    ap.add_argument("--policy", type=Path, default=ROOT / "policies" / "default.yaml")
    ap.add_argument("--kind", default="unix", choices=("unix", "inet"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-c", type=int, default=20)
    ap.add_argument("--per-conn", type=int, default=1)
    ap.add_argument("--quickack", action="store_true")
    ap.add_argument("--signed", action="store_true",
                    help="DKIM-signed mail from bench.example from 127.0.0.1 (use with bench/auth-policy.yaml)")
    a = ap.parse_args()
    if not a.serve and not a.milter:
        ap.error("--milter or --serve is required")
    daemon = None
    with contextlib.ExitStack() as stack:
        if a.serve:
            from tests.harness.aclmilterd import AclMilterd
            from tests.harness.postfix import world_traversable_dir
            work = world_traversable_dir("aclmilter-load-")
            stack.callback(shutil.rmtree, work, True)
            # DNS must stay on loopback: the policy resolves through a private knotd
            policy = stack.enter_context(with_local_dns(a.policy, work))
            daemon = AclMilterd(policy, a.kind, workers=a.workers, extra_args=["--log-level", "warning"]).start()
            stack.callback(daemon.remove)
            stack.callback(daemon.stop)
            spec = daemon.client_spec
        else:
            spec = a.milter
        cpu0 = cpu_seconds(daemon.pid) if daemon and a.workers == 1 else None
        r = run(spec, a.n, a.c, a.per_conn, a.quickack, Mail.signed() if a.signed else None)
        cpu = cpu_seconds(daemon.pid) - cpu0 if cpu0 is not None else None
    print(f"{spec} n={r['n']} c={a.c} per_conn={a.per_conn} quickack={a.quickack}: "
          f"{r['rate']:.0f} msg/s  p50 {r['p50']:.1f} ms  p90 {r['p90']:.1f} ms  p99 {r['p99']:.1f} ms  "
          f"answers {r['answers']}  errors {r['error_count']} {r['errors']}")
    if cpu is not None:
        print(f"milter CPU: {cpu:.2f} s = {cpu / max(r['n'], 1) * 1000:.2f} ms per message")
    return 0 if not r["error_count"] else 1


if __name__ == "__main__":
    sys.exit(main())
