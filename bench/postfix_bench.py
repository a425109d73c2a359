#!/usr/bin/env python3
"""smtp-source -> Postfix -> smtp-sink throughput: no milter vs aclmilter (unix, inet), one run.

    .venv/bin/python bench/postfix_bench.py [-n 2000] [-c 20] [--policy FILE] [--workers N]
                                            [--trials 1] [--cases none,unix,inet]
    .venv/bin/python bench/postfix_bench.py --signed --cases none,auth,auth-inet,chain,chain-inet,rspamd,rspamd-inet
    .venv/bin/python bench/postfix_bench.py --signed --netns --cases none,auth,rspamd-full,rspamd-full-inet

Starts its own private Postfix (tests/harness/postfix.py), `smtp-sink` as the delivery target
and `aclmilter serve` per case; every process is stopped by PID. For each case it reports
accepted msg/s (smtp-source wall time), delivered msg/s (until the maillog shows all
`status=sent`) and the ratio to the no-milter baseline of the same run. With --signed the mail
is DKIM-signed (bench/signed_source.py) and the peers of issue 23 can run in the same run
(bench/peers.py: OpenDKIM -> OpenDMARC -> pyspf-milter, rspamd), started and stopped here.
Traffic stays on 127.0.0.1. Timing belongs here, never in tests.

--netns runs the whole bench (Postfix, smtp-sink, knotd, the milters, the sender) again in a
private network namespace with loopback only (bench/netns.py), deleted at the end; the
rspamd-full cases (rspamd with its stock modules, which fetch remote maps) imply it and refuse
to start anywhere else.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.aclmilterd import AclMilterd  # noqa: E402
from tests.harness.postfix import Postfix, world_traversable_dir  # noqa: E402
from tests.harness.procs import free_port, require_binary, stop_pid, wait_port  # noqa: E402

from localdns import dns_port, with_local_dns  # noqa: E402
from netns import ENV as NETNS_ENV, PrivateNetns, current_isolation_problems, netns_plan  # noqa: E402
from peers import DEFAULT_MODULES, PeerChain, Rspamd  # noqa: E402
import signed_source  # noqa: E402

AUTH_POLICY = ROOT / "bench" / "auth-policy.yaml"


def default_policy() -> Path:
    return ROOT / "policies" / "default.yaml"


def count_sent(pf: Postfix, start: int) -> int:
    return pf.maillog()[start:].count("status=sent")


_TICK = os.sysconf("SC_CLK_TCK")


def system_busy() -> tuple[float, float, int]:
    """(busy, steal, switches) so far, whole machine (/proc/stat).

    busy: seconds of CPU time spent running work; idle, I/O wait and steal are left out.
    Steal is time the hypervisor gave our CPUs to someone else (other jobs on a shared
    host): not a cost of our messages, but it slows the run down. Guest time is already in
    user time. switches: context switches, a count that other jobs disturb far less than
    time (each thread hand-off inside the milter or Postfix adds to it)."""
    with open("/proc/stat") as fh:
        lines = fh.read().splitlines()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in lines[0].split()[1:9])
    switches = next(int(ln.split()[1]) for ln in lines if ln.startswith("ctxt "))
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK, switches


def _tree(pids: list[int]) -> list[int]:
    """`pids` and their live descendants (bounded: a milter has a handful of processes)."""
    todo, seen = list(pids), []
    while todo and len(seen) < 256:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return seen


def tree_rss_mib(pid: int | list[int] | None) -> float:
    """Resident memory (VmRSS) of the milter processes and their children, summed, MiB."""
    total = 0
    for p in _tree([] if pid is None else pid if isinstance(pid, list) else [pid]):
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next((int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:")), 0)
        except FileNotFoundError:
            continue
    return total / 1024


def tree_cpu(pid: int | list[int] | None) -> float:
    """CPU seconds (user + system) used so far by `pid` and its live descendants (0 if gone)."""
    if pid is None:
        return 0.0
    if isinstance(pid, list):
        return sum(tree_cpu(p) for p in pid)
    total, todo, seen = 0.0, [pid], set()
    while todo and len(seen) < 256:           # bounded: a milter has a handful of processes
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / _TICK
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return total


class NoopMilter:
    """bench/noop_milter.py in one mode on a unix socket or on inet:PORT@127.0.0.1."""

    def __init__(self, mode: str, *, inet: bool, policy: Path, sock: Path) -> None:
        self.mode, self.policy = mode, policy
        self.port = free_port() if inet else 0
        self.sock = sock
        self.spec = f"inet:{self.port}@127.0.0.1" if inet else f"unix:{sock}"
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def postfix_spec(self) -> str:
        """The same socket in Postfix's notation (inet:HOST:PORT)."""
        return f"inet:127.0.0.1:{self.port}" if self.port else self.spec

    def start(self) -> "NoopMilter":
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "noop_milter.py"), "--mode", self.mode,
                                      "--policy", str(self.policy), self.spec],
                                     stdout=subprocess.DEVNULL, start_new_session=True)
        if self.port:
            wait_port("127.0.0.1", self.port, 20, self.proc)
        else:
            deadline = time.monotonic() + 20
            while not self.sock.exists() and time.monotonic() < deadline and self.proc.poll() is None:
                time.sleep(0.05)
            if not self.sock.exists():
                raise RuntimeError(f"noop milter ({self.mode}) did not create {self.sock}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid)


def run_case(pf: Postfix, name: str, n: int, c: int, size: int, milter_pid: int | list[int] | None = None,
             keep_session: bool = False, signed: list[bytes] | None = None) -> dict:
    """Run smtp-source once against pf; wait for all deliveries (bounded).

    Also returns the CPU time per message of the whole machine and of the milter process tree
    (everything else on the machine runs in the same window, so treat the first as an upper
    bound of what one message costs)."""
    start = len(pf.maillog())
    (busy0, steal0, switches0), milter0 = system_busy(), tree_cpu(milter_pid)
    cmd = [require_binary("smtp-source"), "-s", str(c), "-m", str(n), "-l", str(size),
           "-f", "sender@bench.example", "-t", "rcpt@bench.test", f"127.0.0.1:{pf.port}"]
    if keep_session:                 # several messages per SMTP (and milter) connection
        cmd.insert(1, "-d")
    t0 = time.monotonic()
    if signed:                       # DKIM-signed mail (bench/signed_source.py) instead
        ok = signed_source.send(pf.port, n, c, signed)
        proc = subprocess.CompletedProcess(cmd, 0 if ok == n else 1, "", f"{n - ok} not accepted")
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    t_acc = time.monotonic() - t0
    # smtp-source gives up on the first refusal; then nothing more will arrive
    deadline = time.monotonic() + (300 if proc.returncode == 0 else 5)
    sent = count_sent(pf, start)
    while sent < n and time.monotonic() < deadline:
        time.sleep(0.1)
        sent = count_sent(pf, start)
    t_del = time.monotonic() - t0
    busy1, steal1, switches1 = system_busy()
    busy_ms = (busy1 - busy0) / max(sent, 1) * 1000
    steal_pct = (steal1 - steal0) / ((os.cpu_count() or 1) * t_del) * 100 if t_del > 0 else 0.0
    milter_ms = (tree_cpu(milter_pid) - milter0) / max(sent, 1) * 1000
    return {"case": name, "n": n, "rc": proc.returncode, "accepted_s": t_acc, "delivered_s": t_del,
            "busy_ms": busy_ms, "milter_ms": milter_ms, "steal_pct": steal_pct,
            "switches": (switches1 - switches0) / max(sent, 1),
            "sent": sent, "acc_rate": n / t_acc, "rss_mib": tree_rss_mib(milter_pid), "del_rate": sent / t_del,
            "stderr": proc.stderr.strip()[-300:]}


#: Cases that must run in a loopback-only network namespace (they would reach the Internet).
NETNS_CASES = ("rspamd-full", "rspamd-full-inet")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-c", type=int, default=20)
    ap.add_argument("-l", "--size", type=int, default=1000, help="message size (smtp-source -l)")
    ap.add_argument("--policy", type=Path, default=default_policy())
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--cases", default="none,floor,unix,floor-inet,inet",
                    help="none = no milter; unix, inet = aclmilter (with --workers); unix-wN, inet-wN = "
                         "aclmilter with N workers, for A/B in one run; a -quiet suffix (unix-quiet, "
                         "inet-w2-quiet) runs it at --log-level warning (no per-message log line); "
                         "floor, floor-inet = a pymilter "
                         "negotiating like aclmilter that does nothing; trivial, trivial-inet = "
                         "pymilter's defaults (every step answered), see bench/noop_milter.py")
    ap.add_argument("--keep-session", action="store_true",
                    help="send every message of a client over one SMTP session (smtp-source -d)")
    ap.add_argument("--warmup", type=int, default=100, help="messages sent before each case")
    ap.add_argument("--signed", action="store_true",
                    help="send DKIM-signed mail from bench.example (bench/signed_source.py) instead "
                         "of smtp-source's; also the cases auth, auth-inet (bench/auth-policy.yaml), "
                         "chain, chain-inet (OpenDKIM -> OpenDMARC -> pyspf-milter), rspamd, "
                         "rspamd-inet (SPF, DKIM, DMARC modules), rspamd-full, rspamd-full-inet "
                         "(rspamd's stock modules, implies --netns): bench/peers.py")
    ap.add_argument("--netns", action="store_true",
                    help="run the whole bench in a private network namespace with loopback only "
                         "(ip netns add; deleted at the end): bench/netns.py")
    ap.add_argument("--system-dns", action="store_true",
                    help="keep the policy's DNS settings (default: a private loopback knotd)")
    a = ap.parse_args()
    # SIGTERM runs the clean-up (the `finally` below, the namespace's) as Ctrl-C does; the parent
    # outside the namespace stops the run inside with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wanted = a.netns or any(c in NETNS_CASES for c in a.cases.split(","))
    plan = netns_plan(wanted, os.environ.get(NETNS_ENV), not current_isolation_problems())
    if plan == "enter":
        with PrivateNetns() as ns:
            print(f"running in network namespace {ns.name} (loopback only)", flush=True)
            try:
                return ns.run([sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:]])
            except KeyboardInterrupt:    # ns.run stopped the run inside; the namespace goes next
                print("interrupted", file=sys.stderr)
                return 130
    if plan == "refuse":
        ap.error(f"network namespace {os.environ.get(NETNS_ENV)} is not loopback only: "
                 f"{', '.join(current_isolation_problems())}")
    work = world_traversable_dir("aclmilter-bench-")
    sink_port = free_port()
    sink = subprocess.Popen([require_binary("smtp-sink"), "-u", "postfix", f"127.0.0.1:{sink_port}", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results: list[dict] = []
    stack = contextlib.ExitStack()
    # peers that read /etc/resolv.conf get a private one naming this address (bench/peers.py)
    libc_dns = f"127.53.{os.getpid() % 250 + 1}.{sink_port % 250 + 1}"
    auth_policy = AUTH_POLICY
    if not a.system_dns:
        # DNS traffic must stay on loopback: resolve through a private knotd (warm cache).
        a.policy = stack.enter_context(with_local_dns(a.policy, work, libc_dns))
        auth = yaml.safe_load(AUTH_POLICY.read_text())
        auth["settings"]["dns"] = yaml.safe_load(a.policy.read_text())["settings"]["dns"]
        auth["settings"]["dmarc_history_file"] = str(work / "auth-history")
        auth_policy = work / "auth-policy-localdns.yaml"
        auth_policy.write_text(yaml.safe_dump(auth, sort_keys=False))
    signed = signed_source.signed_messages(200, a.size) if a.signed else None
    pf = Postfix(relay_port=sink_port, root=work / "pf")
    daemons: dict[str, AclMilterd] = {}
    noops: dict[str, NoopMilter] = {}
    peers: dict[str, PeerChain | Rspamd] = {}
    try:
        wait_port("127.0.0.1", sink_port, 10, sink)
        pf.start()
        for case in dict.fromkeys(a.cases.split(",")):
            m = re.fullmatch(r"(unix|inet)(?:-w([1-9][0-9]*))?(-quiet)?", case)
            n = re.fullmatch(r"(trivial|floor)(-inet)?", case)
            p = re.fullmatch(r"(auth|chain|rspamd|rspamd-full)(-inet)?", case)
            if p and p.group(1) == "auth":
                (work / case).mkdir(mode=0o755)
                daemons[case] = AclMilterd(auth_policy, "inet" if p.group(2) else "unix", workdir=work / case,
                                           workers=a.workers, extra_args=["--log-level", "info"]).start()
            elif p:
                kind = "inet" if p.group(2) else "unix"
                port = dns_port(a.policy)
                peer = (PeerChain(work / case, port, libc_dns, kind) if p.group(1) == "chain"
                        else Rspamd(work / case, port, kind, modules=DEFAULT_MODULES) if p.group(1) == "rspamd"
                        else Rspamd(work / case, port, kind, modules=None, libc_dns=libc_dns))
                peers[case] = peer.start()
            elif m:
                (work / case).mkdir(mode=0o755)
                # the daemon's default: one log line per message (to a file here); -quiet: none
                d = AclMilterd(a.policy, m.group(1), workdir=work / case, workers=int(m.group(2) or a.workers),
                               extra_args=["--log-level", "warning" if m.group(3) else "info"])
                daemons[case] = d.start()
            elif n:
                noops[case] = NoopMilter(n.group(1), inet=bool(n.group(2)), policy=a.policy,
                                         sock=work / f"{case}.sock").start()
            elif case != "none":
                ap.error(f"unknown case {case!r}")
        for trial in range(a.trials):
            for case in a.cases.split(","):
                milter = noops.get(case) or daemons.get(case) or peers.get(case)     # None for "none"
                pf.set_milter(milter.postfix_spec if milter else None)
                if a.warmup:
                    run_case(pf, "warmup", a.warmup, a.c, a.size, keep_session=a.keep_session, signed=signed)
                pid = (milter.pids if isinstance(milter, (PeerChain, Rspamd)) else milter.pid) if milter else None
                r = run_case(pf, case, a.n, a.c, a.size, pid, a.keep_session, signed)
                r["trial"] = trial + 1
                results.append(r)
                print(f"trial {trial + 1} {case:7s} accepted {r['acc_rate']:7.1f} msg/s   "
                      f"delivered {r['del_rate']:7.1f} msg/s   ({r['sent']}/{a.n} sent, rc={r['rc']})  "
                      f"CPU/msg: machine {r['busy_ms']:.2f} ms, milter {r['milter_ms']:.2f} ms; steal {r['steal_pct']:.0f}%; "
                      f"{r['switches']:.0f} context switches/msg; milter RSS {r['rss_mib']:.0f} MiB",
                      flush=True)
    finally:
        for peer in peers.values():
            peer.stop()
        for nm in noops.values():
            nm.stop()
        for d in daemons.values():
            d.stop()
        pf.stop()
        stop_pid(sink.pid)
        stack.close()
        if os.environ.get("ACLMILTER_KEEP_TMP") != "1":
            shutil.rmtree(work, ignore_errors=True)

    import statistics
    base = [r for r in results if r["case"] == "none"]
    base_acc = statistics.median(r["acc_rate"] for r in base) if base else None
    base_del = statistics.median(r["del_rate"] for r in base) if base else None
    print(f"\n{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}  n={a.n} c={a.c} "
          f"size={a.size} policy={a.policy.name} keep_session={a.keep_session} "
          f"workers={a.workers} trials={a.trials} signed={a.signed}")
    print("ratios are to the median no-milter rate of this run")
    print("| case | accepted msg/s | delivered msg/s | ratio accepted | ratio delivered "
          "| machine CPU ms/msg | milter CPU ms/msg | steal | context switches/msg | milter RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ra = f"{r['acc_rate'] / base_acc:.2f}" if base_acc else "-"
        rd = f"{r['del_rate'] / base_del:.2f}" if base_del else "-"
        print(f"| {r['case']} (trial {r['trial']}) | {r['acc_rate']:.0f} | {r['del_rate']:.0f} | {ra} | {rd} "
              f"| {r['busy_ms']:.2f} | {r['milter_ms']:.2f} | {r['steal_pct']:.0f}% | {r['switches']:.0f} "
              f"| {r['rss_mib']:.0f} |")
    none_by_trial = {r["trial"]: r for r in base}
    base_cpu = statistics.median(r["busy_ms"] for r in base) if base else 0.0
    for case in dict.fromkeys(r["case"] for r in results):
        rs = [r for r in results if r["case"] == case]
        ma = statistics.median(r["acc_rate"] for r in rs)
        md = statistics.median(r["del_rate"] for r in rs)
        # paired: each trial against the no-milter run of the same trial (drift cancels)
        pa = [r["acc_rate"] / none_by_trial[r["trial"]]["acc_rate"] for r in rs if r["trial"] in none_by_trial]
        pd = [r["del_rate"] / none_by_trial[r["trial"]]["del_rate"] for r in rs if r["trial"] in none_by_trial]
        paired = (f"  paired {statistics.median(pa):.2f}x / {statistics.median(pd):.2f}x" if pa and pd else "")
        # CPU-bound runs: no-milter CPU per message / this case's, i.e. the rate ratio the
        # machine would give without other jobs taking turns on its CPUs (steal)
        cpu = statistics.median(r["busy_ms"] for r in rs)
        by_cpu = f"  CPU-bound {base_cpu / cpu:.2f}x" if cpu and base_cpu else ""
        by_cpu += f"  milter CPU {statistics.median(r['milter_ms'] for r in rs):.2f} ms/msg"
        print(f"median {case:7s}: accepted {ma:.0f} msg/s ({ma / base_acc:.2f}x)  "
              f"delivered {md:.0f} msg/s ({md / base_del:.2f}x){paired}{by_cpu}" if base_acc and base_del else case)
    return 0 if all(r["sent"] >= r["n"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
