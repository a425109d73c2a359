"""A private network namespace for a benchmark run: loopback up, nothing else, no route out.

    problems = isolation_problems()          # [] inside such a namespace
    require_isolated("rspamd with its stock modules")   # RuntimeError otherwise
    with PrivateNetns() as ns:               # `ip netns add`, lo up; deleted on exit
        rc = ns.run([sys.executable, "bench/postfix_bench.py", ...])

Why: rspamd's stock modules fetch remote maps over HTTP(S) (maps.rspamd.com, openphish, ...)
and query public DNS lists. The bench's traffic must stay on the machine, so a run with those
modules happens in a namespace whose only interface is `lo`: a connection to anything outside
fails at once (ENETUNREACH), and the DNS goes to the bench's own knotd on 127.0.0.1 inside it.

The namespace is the bench's own (named after its PID). On exit, also after Ctrl-C or an
exception, the child is stopped by PID (SIGTERM, so its own clean-up runs), then any process
still in the namespace (`ip netns pids`: all started by this run) by PID, then the namespace
is deleted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.procs import require_binary, stop_pid  # noqa: E402

#: Set in the child's environment: the namespace it was started in (a second re-exec is a bug).
ENV = "ACLMILTER_BENCH_NETNS"
LOOPBACK = "lo"


def interfaces(proc_net_dev: str) -> list[str]:
    """Interface names listed in a /proc/net/dev text (two header lines, then `name: counters`)."""
    return [ln.split(":", 1)[0].strip() for ln in proc_net_dev.splitlines()[2:] if ":" in ln]


def route_devices(proc_net_route: str, proc_net_ipv6_route: str) -> list[str]:
    """The device of every route in /proc/net/route (IPv4 main table: header, `Iface` first)
    and /proc/net/ipv6_route (every table: no header, device last)."""
    v4 = [ln.split()[0] for ln in proc_net_route.splitlines()[1:] if ln.split()]
    v6 = [ln.split()[-1] for ln in proc_net_ipv6_route.splitlines() if ln.split()]
    return v4 + v6


def isolation_problems(proc_net_dev: str, proc_net_route: str, proc_net_ipv6_route: str) -> list[str]:
    """Why this namespace could reach beyond the machine: every interface other than `lo`
    and every route through one. An empty list means loopback only (isolated)."""
    problems = [f"interface {name}" for name in interfaces(proc_net_dev) if name != LOOPBACK]
    problems += [f"route via {dev}" for dev in dict.fromkeys(route_devices(proc_net_route, proc_net_ipv6_route))
                 if dev != LOOPBACK]
    return problems


def current_isolation_problems() -> list[str]:
    """isolation_problems() of the network namespace this process runs in."""
    def read(name: str) -> str:
        try:
            return Path("/proc/net", name).read_text()
        except FileNotFoundError:       # no IPv6 in this kernel: no IPv6 route either
            return ""
    return isolation_problems(read("dev"), read("route"), read("ipv6_route"))


def netns_plan(wanted: bool, inside: str | None, isolated: bool) -> str:
    """What a bench does about its network namespace: "run" (here: none is wanted, or this
    one is loopback only already), "enter" (re-run itself in a new private one) or "refuse"
    (one is wanted and this process was started in one, yet it is not loopback only: entering
    another would loop).

    `wanted`: --netns, or a case that needs one; `inside`: the namespace the parent put this
    process in (ENV; None: none); `isolated`: no interface or route here but loopback."""
    if not wanted or isolated:
        return "run"
    return "refuse" if inside else "enter"


def require_isolated(what: str) -> None:
    """Raise RuntimeError unless this process's network namespace is loopback only."""
    problems = current_isolation_problems()
    if problems:
        raise RuntimeError(f"refusing to start {what} outside a loopback-only network namespace "
                           f"(postfix_bench.py --netns creates one); this one has: {', '.join(problems)}")


class PrivateNetns:
    """`ip netns add aclmilter-bench-PID`, loopback up; run one child in it; delete it on exit."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"aclmilter-bench-{os.getpid()}"
        self.ip = require_binary("ip")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "PrivateNetns":
        subprocess.run([self.ip, "netns", "add", self.name], check=True)
        try:
            subprocess.run([self.ip, "-n", self.name, "link", "set", LOOPBACK, "up"], check=True)
        except BaseException:
            self._delete()
            raise
        return self

    def run(self, cmd: Sequence[str]) -> int:
        """Run `cmd` in the namespace and return its exit status. Its own session, so a Ctrl-C
        reaches this process only; this one then asks the child to stop (SIGTERM) by PID."""
        env = dict(os.environ, **{ENV: self.name})
        self.proc = subprocess.Popen([self.ip, "netns", "exec", self.name, *cmd], env=env, start_new_session=True)
        try:
            return self.proc.wait()
        except BaseException:
            # the child stops its daemons in its own `finally`; give it the time that takes
            stop_pid(self.proc.pid, timeout=120)
            raise

    def pids(self) -> list[int]:
        """PIDs of the processes still in the namespace (all started by this run)."""
        out = subprocess.run([self.ip, "netns", "pids", self.name], capture_output=True, text=True).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc.pid, timeout=120)
        left = self.pids()              # daemons the child failed to stop (it double-forked, say)
        if left:
            print(f"stopping {len(left)} processes left in network namespace {self.name}: {left}",
                  file=sys.stderr, flush=True)
        for pid in left:
            stop_pid(pid, sig=signal.SIGTERM)
        self._delete()

    def _delete(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run([self.ip, "netns", "del", self.name], check=True)
