"""Pre-forked workers sharing one listening socket (`--workers N`).

libmilter is thread-per-connection and the policy engine is Python, so one process uses one
core at most. The parent opens the socket (smfi_opensocket), forks N children that each run
smfi_main on the inherited listener (the kernel spreads accepts over them), forwards SIGUSR1
(reload) and SIGTERM/SIGINT/SIGHUP (stop) to them, and restarts a child that died on its own.
"""

from __future__ import annotations

import logging
import os
import ctypes
import signal
import time
from typing import Callable

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


def run(n: int, child_main: Callable[[], int], after_start: Callable[[], None] | None = None,
        nudge: Callable[[], None] | None = None) -> int:
    """Fork n workers running child_main(); supervise until told to stop. Returns exit code.

    While stopping, `nudge()` is called once per live worker every NUDGE_INTERVAL (it should
    make one connection to the shared listener, see socketspec.wake_listener); workers still
    alive after STOP_GRACE are killed.
    """
    children: dict[int, float] = {}
    stopping = False
    quick_deaths = 0

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            # the child gets default signal dispositions back: libmilter handles them there
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                signal.signal(sig, signal.SIG_DFL)
            _die_with_parent()
            code = 1
            try:
                code = child_main()
            except BaseException:  # noqa: BLE001 - never return into the parent's loop
                log.exception("worker failed")
            finally:
                logging.shutdown()       # os._exit skips atexit: write what is still queued
                os._exit(code)
        children[pid] = time.monotonic()

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
    signal.signal(signal.SIGUSR1, lambda *_: forward(signal.SIGUSR1))
    for _ in range(n):
        spawn()
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
        started = children.pop(pid, None)
        if started is None:
            continue
        code = os.waitstatus_to_exitcode(raw)
        if stopping:
            continue
        log.error("worker %d exited with %d; restarting it", pid, code)
        quick_deaths = quick_deaths + 1 if time.monotonic() - started < MIN_LIFETIME else 0
        if quick_deaths >= MAX_QUICK_DEATHS:
            log.error("workers keep dying; giving up")
            stopping = True
            status = 1
            forward(signal.SIGTERM)
            continue
        spawn()
    return status
