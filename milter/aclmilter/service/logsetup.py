"""Logging for the daemon: stderr always, syslog (mail facility) with --syslog."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys


def setup(level: str = "info", use_syslog: bool = False, syslog_socket: str = "/dev/log") -> None:
    """Configure the `aclmilter` logger tree; errors include tracebacks (logged by callers)."""
    root = logging.getLogger("aclmilter")
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
    for h in list(root.handlers):
        root.removeHandler(h)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter("%(asctime)s aclmilter[%(process)d] %(levelname)s %(message)s"))
    root.addHandler(err)
    if use_syslog:
        if os.path.exists(syslog_socket):
            sl = logging.handlers.SysLogHandler(address=syslog_socket,
                                                facility=logging.handlers.SysLogHandler.LOG_MAIL)
            # syslog adds its own timestamp and host; the tag lets rsyslog route by program
            sl.setFormatter(logging.Formatter("aclmilter[%(process)d]: %(message)s"))
            root.addHandler(sl)
        else:
            root.warning("--syslog: %s does not exist, logging to stderr only", syslog_socket)
