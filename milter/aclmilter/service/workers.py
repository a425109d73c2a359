"""Pre-forked workers sharing one listening socket, under a supervising master (`--workers N`).

libmilter is thread-per-connection and the policy engine is Python, so one process uses one
core at most. The parent opens the socket (smfi_opensocket), forks N children that each run
smfi_main on the inherited listener (the kernel spreads accepts over them), forwards SIGUSR1
(reload) and SIGTERM/SIGINT/SIGHUP (stop) to them, and restarts a child that died on its own.

The master is also what keeps the service up when a worker crashes: libmilter reads past the
end of its macro array for a malformed SMFIC_MACRO packet (docs/dev/libmilter-macro-crash.md)
and the process dies with SIGSEGV. The master sees the death within POLL_INTERVAL, logs the
cause and the MTA connections that died with the worker (`liveconns`), and forks a new worker
at once; the listening socket stays open in the master all along, so new connections wait in
the backlog instead of being refused. A worker killed by a signal is always restarted; only
workers that *exit* quickly again and again (cannot start) make the master give up.
"""

from __future__ import annotations

import logging
import os
import ctypes
import signal
import time
from dataclasses import dataclass
from typing import Callable

from .liveconns import LiveConnections

log = logging.getLogger("aclmilter")

#: A child that dies faster than this after its start counts as a crash loop.
MIN_LIFETIME = 5.0
MAX_QUICK_DEATHS = 5
#: How often the parent looks for exited workers (it never blocks in wait(): a signal must
#: be acted on at once, and a stop must be helped along).
POLL_INTERVAL = 0.2
#: While stopping, wake workers stuck in accept() this often...
NUDGE_INTERVAL = 1.0
#: ...and SIGKILL those still there after this long (the MTA then tempfails their messages).
STOP_GRACE = 20.0       # below the unit's TimeoutStopSec=30


def _die_with_parent() -> None:
    """Ask Linux to kill this worker if the master dies (e.g. SIGKILL): no orphan keeps the socket.

    The MTA then sees the connection close and applies milter_default_action (nothing lost).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the master's SIGTERM forwarding still works
        log.debug("prctl(PR_SET_PDEATHSIG) not available")


@dataclass
class Supervision:
    """What the master does besides forking: shared connection counts, reload, death reports."""

    #: open MTA connections per worker slot (bound in each child after the fork)
    live: LiveConnections | None = None
    #: called in the master for SIGUSR1 (after forwarding it), so a restarted worker starts
    #: with the policy the others serve, not the one the master started with
    on_reload: Callable[[], None] | None = None
    #: called in the master as on_death(cause, lost_connections) for a worker that died on its
    #: own ("SIGSEGV", "exit 3", ...), and on_restart() when its successor is forked
    on_death: Callable[[str, int], None] | None = None
    on_restart: Callable[[], None] | None = None


def death_cause(raw: int) -> str:
    """A wait() status as text: the signal's name for a killed worker, else `exit N`."""
    if os.WIFSIGNALED(raw):
        sig = os.WTERMSIG(raw)
        try:
            return signal.Signals(sig).name
        except ValueError:
            return f"signal {sig}"
    return f"exit {os.waitstatus_to_exitcode(raw)}"


def run(n: int, child_main: Callable[[], int], after_start: Callable[[], None] | None = None,
        nudge: Callable[[], None] | None = None, sup: Supervision | None = None) -> int:
    """Fork n workers running child_main(); supervise until told to stop. Returns exit code.

    A worker that dies on its own is logged (cause, lost MTA connections) and replaced within
    POLL_INTERVAL. While stopping, `nudge()` is called once per live worker every
    NUDGE_INTERVAL (it should make one connection to the shared listener, see
    socketspec.wake_listener); workers still alive after STOP_GRACE are killed.
    """
    sup = sup or Supervision()
    children: dict[int, tuple[float, int]] = {}     # pid -> (started, slot)
    stopping = False
    quick_deaths = 0

    def spawn(slot: int) -> int:
        pid = os.fork()
        if pid == 0:
            # the child gets default signal dispositions back: libmilter handles them there
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                signal.signal(sig, signal.SIG_DFL)
            _die_with_parent()
            if sup.live is not None:
                sup.live.bind(slot)
            code = 1
            try:
                code = child_main()
            except BaseException:  # never return into the parent's loop
                log.exception("worker failed")
            finally:
                logging.shutdown()       # os._exit skips atexit: write what is still queued
                os._exit(code)
        children[pid] = (time.monotonic(), slot)
        return pid

    def forward(sig: int) -> None:
        for pid in list(children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def on_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        forward(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_stop)

    def on_usr1(_signum: int, _frame: object) -> None:
        forward(signal.SIGUSR1)
        if sup.on_reload is not None:
            try:
                sup.on_reload()
            except Exception:  # the master must keep supervising
                log.exception("master: policy reload failed")

    signal.signal(signal.SIGUSR1, on_usr1)
    for slot in range(n):
        spawn(slot)
    log.info("started %d workers: %s", n, " ".join(map(str, children)))
    if after_start is not None:
        after_start()
    status = 0
    stop_deadline = 0.0
    last_nudge = 0.0
    while children:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if stopping:
                now = time.monotonic()
                stop_deadline = stop_deadline or now + STOP_GRACE
                if now >= stop_deadline:
                    log.error("workers %s did not stop within %.0f s; killing them",
                              " ".join(map(str, children)), STOP_GRACE)
                    forward(signal.SIGKILL)
                    stop_deadline = float("inf")
                elif nudge is not None and now - last_nudge >= NUDGE_INTERVAL:
                    last_nudge = now
                    for _ in list(children):
                        nudge()
            time.sleep(POLL_INTERVAL)
            continue
        entry = children.pop(pid, None)
        if entry is None:
            continue
        started, slot = entry
        code = os.waitstatus_to_exitcode(raw)
        if stopping:
            continue
        cause = death_cause(raw)
        lost = sup.live.get(slot) if sup.live is not None else 0
        log.error("worker %d exited with %d; restarting it (%s after %.1f s; %d open MTA "
                  "connection(s) lost: the MTA applies its milter default action to them)",
                  pid, code, cause, time.monotonic() - started, lost)
        if sup.on_death is not None:
            sup.on_death(cause, lost)
        if not os.WIFSIGNALED(raw):
            # a worker that cannot start exits at once, again and again: stop retrying then.
            # A worker killed by a signal (a crash on hostile input) is always replaced.
            quick_deaths = quick_deaths + 1 if time.monotonic() - started < MIN_LIFETIME else 0
            if quick_deaths >= MAX_QUICK_DEATHS:
                log.error("workers keep dying; giving up")
                stopping = True
                status = 1
                forward(signal.SIGTERM)
                continue
        new = spawn(slot)
        log.info("worker %d replaced by worker %d (slot %d)", pid, new, slot)
        if sup.on_restart is not None:
            sup.on_restart()
    return status
