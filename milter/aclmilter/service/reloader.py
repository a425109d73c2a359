"""Policy reload on SIGUSR1, in a way that works under libmilter.

libmilter's smfi_main blocks SIGHUP, SIGTERM and SIGINT and turns each into "stop" in its
own sigwait thread, and the Python main thread sits inside smfi_main, so a Python-level
signal handler would never run. Python's C-level handler still writes the signal number to
the wakeup fd (`signal.set_wakeup_fd`) in whichever thread receives the signal; a helper
thread reads that pipe and performs the reload. Connections are never touched: the runtime
swaps its snapshot and each connection keeps the one it started with.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

log = logging.getLogger("aclmilter")

#: Left to libmilter's signal thread (stop/abort); our threads must not swallow them.
LIBMILTER_SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
#: Every signal the service acts on.
SERVICE_SIGNALS = LIBMILTER_SIGNALS | {signal.SIGUSR1}


@contextmanager
def signals_blocked() -> Iterator[None]:
    """Threads started inside this block never receive the service's signals.

    A thread inherits its creator's signal mask. A helper thread (the metrics server, the
    reload reader) that could receive SIGTERM would take it away from the thread that must act
    on it: libmilter's sigwait thread in a worker, or the master's main thread (blocked in
    wait(), which a signal delivered to another thread does not interrupt), so a stop or a
    reload would be lost.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SERVICE_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def install(on_reload: Callable[[], None], extra: dict[int, Callable[[], None]] | None = None) -> threading.Thread:
    """Call on_reload() for every SIGUSR1 (and extra[sig]() for other signals); main thread only."""
    handlers = {signal.SIGUSR1: on_reload, **(extra or {})}
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    for sig in handlers:
        signal.signal(sig, lambda *_: None)   # installs Python's C handler (the fd writer)

    def loop() -> None:
        while True:
            data = os.read(rfd, 64)
            if not data:
                return
            for signum in data:
                fn = handlers.get(signum)
                if fn is None:
                    continue
                try:
                    fn()
                except Exception:  # a failed reload must not end the thread
                    log.exception("handling signal %d failed", signum)

    t = threading.Thread(target=loop, name="aclmilter-signals", daemon=True)
    with signals_blocked():      # SIGUSR1 still reaches the pipe through other threads
        t.start()
    return t
