"""Logging for the daemon: stderr always, syslog (mail facility) with --syslog.

The line written for every message never makes a milter callback wait for the log's I/O:
those records go onto a queue (logging's QueueHandler) and one writer thread per process
formats and writes them, a batch per write. Written in the callback, a line costs a write
system call with the handler's lock held, and with twenty MTA connections the other callbacks
queue up on that lock; written one by one from a thread, every line wakes that thread. They
reach the log at most BATCH_WINDOW late; records still queued when the process ends are
written by `logging.shutdown()` (run at exit, and by a pre-forked worker before it exits).
If the log stops taking lines (a full pipe), at most MAX_WAITING wait; the rest are counted
and the count is logged when lines move again.
Every other record (errors with tracebacks, start, stop, reload) is written at once.
`message_line` also skips the parts of `Logger.info` the formats never show (caller lookup,
thread name).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from .reloader import signals_blocked

#: The logger of the one-line-per-message records (service.glue).
MESSAGE_LOGGER = "aclmilter.message"
FORMAT = "%(asctime)s aclmilter[%(process)d] %(levelname)s %(message)s"
SYSLOG_FORMAT = "aclmilter[%(process)d]: %(message)s"


#: How long the writer lets lines gather after the first one arrives: under load one write
#: (and one wake-up of the writer) carries many lines instead of one each.
BATCH_WINDOW = 0.05
#: Lines waiting beyond this are dropped and counted (the log's reader is stuck, e.g. a full
#: pipe): mail keeps flowing and memory stays bounded; the count is logged once lines move.
MAX_WAITING = 100_000


@dataclass(frozen=True)
class QueueLimits:
    """How the message-line writer batches (`batch_window`, seconds) and how many lines may
    wait (`max_waiting`) before further ones are dropped and counted."""

    batch_window: float = BATCH_WINDOW
    max_waiting: int = MAX_WAITING


class _Writer(threading.Thread):
    """Formats and writes queued records in batches until it dequeues `STOP`."""

    STOP = object()

    def __init__(self, records: queue.SimpleQueue, targets: list[logging.Handler], limits: QueueLimits) -> None:
        super().__init__(name="aclmilter-log-writer", daemon=True)
        self.records, self.targets, self.limits = records, targets, limits
        self.dropped = 0             # lines not queued because too many were waiting
        self.dropped_lock = threading.Lock()

    def run(self) -> None:
        stop = False
        while not stop:
            batch = [self.records.get()]
            if batch[0] is not self.STOP:
                time.sleep(self.limits.batch_window)
            while True:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            stop = any(r is self.STOP for r in batch)
            try:
                self.write([r for r in batch if r is not self.STOP])
                with self.dropped_lock:
                    dropped, self.dropped = self.dropped, 0
                if dropped:
                    self.write([_record(logging.WARNING, f"{dropped} message log lines dropped: "
                                                         f"more than {self.limits.max_waiting} were waiting")])
            except Exception:  # the writer must outlive any record
                logging.getLogger("aclmilter").exception("log writer: a batch was lost")

    def write(self, batch: list[logging.LogRecord]) -> None:
        """Pass the batch to every target; a stream gets it in one write. Never raises."""
        for target in self.targets:
            wanted = [r for r in batch if r.levelno >= target.level]
            if not wanted:
                continue
            if isinstance(target, logging.StreamHandler) and not target.filters:
                try:
                    text = "".join(target.format(r) + target.terminator for r in wanted)
                    with target.lock:  # type: ignore[union-attr]  # createLock() set it
                        target.stream.write(text)
                        target.flush()
                except Exception:  # noqa: BLE001 - logging must never stop the writer
                    target.handleError(wanted[0])
            else:
                for r in wanted:
                    target.handle(r)        # handleError inside: never raises


class QueuedHandler(logging.handlers.QueueHandler):
    """Hands records to this process's writer thread (started on first use in each process)."""

    def __init__(self, targets: list[logging.Handler], limits: QueueLimits = QueueLimits()) -> None:
        super().__init__(queue.SimpleQueue())
        self.targets, self.limits = targets, limits
        self._pid = -1
        self._writer: _Writer | None = None
        self._start_lock = threading.Lock()
        _OPEN.add(self)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record itself, its message text fixed now (arguments may change later); the
        writer thread formats it. No copy and no pickling: the queue never leaves the process."""
        if record.args:
            record.msg, record.args = record.getMessage(), None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        if self._pid != os.getpid():
            self._start()
        writer = self._writer
        assert writer is not None                       # _start() made it
        if self.queue.qsize() >= self.limits.max_waiting:  # type: ignore[attr-defined]  # a SimpleQueue
            with writer.dropped_lock:
                writer.dropped += 1
            return
        self.queue.put_nowait(record)

    def _start(self) -> None:
        """Start this process's writer (a forked worker inherits no thread, and records queued
        in the parent before the fork are the parent's to write)."""
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self.queue = queue.SimpleQueue()
            self._writer = _Writer(self.queue, self.targets, self.limits)
            with signals_blocked():     # a stop or reload signal must reach libmilter's thread
                self._writer.start()
            self._pid = os.getpid()

    def stop_writer(self) -> None:
        """Write what is queued, then stop this process's writer (the next record starts one)."""
        with self._start_lock:
            if self._writer is not None and self._pid == os.getpid():
                self.queue.put_nowait(_Writer.STOP)
                self._writer.join()
            self._writer, self._pid = None, -1

    def close(self) -> None:
        self.stop_writer()
        _OPEN.discard(self)
        super().close()


#: Handlers whose writer must be stopped before a fork: a thread in the middle of a write at
#: that moment could leave the stream's lock held in the child forever.
_OPEN: "weakref.WeakSet[QueuedHandler]" = weakref.WeakSet()


def _before_fork() -> None:
    for handler in list(_OPEN):
        handler.stop_writer()


os.register_at_fork(before=_before_fork)


def setup(level: str = "info", use_syslog: bool = False, syslog_socket: str = "/dev/log", *,
          stream: Any = None, limits: QueueLimits = QueueLimits()) -> None:
    """Configure the `aclmilter` logger tree; errors include tracebacks (logged by callers).

    Lines go to `stream` (default: sys.stderr at this call) and, with `use_syslog`, to syslog."""
    logging._srcfile = None          # no stack walk per record to find the caller
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger("aclmilter")
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
    for logger in (logging.getLogger(MESSAGE_LOGGER), root):    # queued lines drain first
        for h in list(logger.handlers):
            logger.removeHandler(h)
            h.close()
    err = logging.StreamHandler(sys.stderr if stream is None else stream)
    err.setFormatter(logging.Formatter(FORMAT))
    targets: list[logging.Handler] = [err]
    missing_syslog = False
    if use_syslog:
        if os.path.exists(syslog_socket):
            sl = logging.handlers.SysLogHandler(address=syslog_socket,
                                                facility=logging.handlers.SysLogHandler.LOG_MAIL)
            # syslog adds its own timestamp and host; the tag lets rsyslog route by program
            sl.setFormatter(logging.Formatter(SYSLOG_FORMAT))
            targets.append(sl)
        else:
            missing_syslog = True
    for target in targets:
        root.addHandler(target)
    # The per-message lines go through the writer thread; everything else (errors with their
    # tracebacks, start and stop) is written at once, so a crash loses none of it.
    messages = logging.getLogger(MESSAGE_LOGGER)
    messages.propagate = False
    messages.addHandler(QueuedHandler(targets, limits))
    if missing_syslog:
        root.warning("--syslog: %s does not exist, logging to stderr only", syslog_socket)


_START = logging._startTime  # type: ignore[attr-defined]  # logging's own start time


def message_line(logger: logging.Logger, text: str) -> None:
    """Log `text` at INFO through `logger`'s handlers, like `logger.info("%s", text)`.

    The record is filled directly (`_record`): `Logger.info` spends two thirds of its time
    building fields (caller, module, thread) that no format here shows, and this line is
    written for every message. Handlers, levels and filters apply as usual.
    """
    if logger.isEnabledFor(logging.INFO):
        logger.handle(_record(logging.INFO, text, logger.name))


def _record(level: int, text: str, name: str = MESSAGE_LOGGER) -> logging.LogRecord:
    """A LogRecord with what the formats here use, built without LogRecord.__init__."""
    record = logging.LogRecord.__new__(logging.LogRecord)
    now = time.time()
    record.__dict__.update(
        name=name, msg=text, args=(), levelname=logging.getLevelName(level), levelno=level,
        pathname="", filename="", module="", exc_info=None, exc_text=None, stack_info=None,
        lineno=0, funcName="", created=now, msecs=int(now * 1000) % 1000,
        relativeCreated=(now - _START) * 1000, thread=None, threadName=None,
        processName=None, process=os.getpid(), taskName=None)
    return record
