"""Logging for the daemon: stderr always, syslog (mail facility) with --syslog.

The per-message line (`message_line`) is written once for every message, so it skips the
parts of `Logger.info` the daemon's formats never show (caller lookup, thread name).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time

#: The formats never show where a call was made or which thread made it; `logging` computes
#: both for every record unless told not to (its documented optimisation switches).
FORMAT = "%(asctime)s aclmilter[%(process)d] %(levelname)s %(message)s"
SYSLOG_FORMAT = "aclmilter[%(process)d]: %(message)s"


def setup(level: str = "info", use_syslog: bool = False, syslog_socket: str = "/dev/log") -> None:
    """Configure the `aclmilter` logger tree; errors include tracebacks (logged by callers)."""
    logging._srcfile = None          # no stack walk per record to find the caller
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger("aclmilter")
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
    for h in list(root.handlers):
        root.removeHandler(h)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(err)
    if use_syslog:
        if os.path.exists(syslog_socket):
            sl = logging.handlers.SysLogHandler(address=syslog_socket,
                                                facility=logging.handlers.SysLogHandler.LOG_MAIL)
            # syslog adds its own timestamp and host; the tag lets rsyslog route by program
            sl.setFormatter(logging.Formatter(SYSLOG_FORMAT))
            root.addHandler(sl)
        else:
            root.warning("--syslog: %s does not exist, logging to stderr only", syslog_socket)


_PID = os.getpid()
_START = logging._startTime


def message_line(logger: logging.Logger, text: str) -> None:
    """Log `text` at INFO through `logger`'s handlers, like `logger.info("%s", text)`.

    The record is filled directly with what a LogRecord holds: `Logger.info` spends two thirds
    of its time building fields (caller, module, thread) that no format here shows, and this
    line is written for every message. Handlers, levels and filters apply as usual.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    record = logging.LogRecord.__new__(logging.LogRecord)
    now = time.time()
    record.__dict__.update(
        name=logger.name, msg=text, args=(), levelname="INFO", levelno=logging.INFO,
        pathname="", filename="", module="", exc_info=None, exc_text=None, stack_info=None,
        lineno=0, funcName="", created=now, msecs=int(now * 1000) % 1000,
        relativeCreated=(now - _START) * 1000, thread=None, threadName=None,
        processName=None, process=_PID if os.getpid() == _PID else os.getpid(), taskName=None)
    logger.handle(record)
