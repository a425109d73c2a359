"""Envelope text pymilter cannot decode still reaches the session, decoded with surrogates.

pymilter's C module builds the HELO name (and the connect hostname) with `Py_BuildValue("s")`,
a strict UTF-8 decode. For 8-bit bytes that are not UTF-8 the decode fails *before* any
Python code runs: pymilter prints the error (through `sys.excepthook`) and answers with the
exception policy, CONTINUE, so the HELO ACL would silently not run (fail open).

The UnicodeDecodeError carries the original bytes, and pymilter reports it in the thread of
the MTA connection it belongs to, with no traceback (no Python frame ran). `install()` puts a
hook in front of `sys.excepthook` that recognises exactly that case and hands the bytes to the
connection object of this thread (`bind()`), which runs the step with the value decoded with
`surrogateescape`. pymilter has already answered CONTINUE by then, so the step is treated as
one the MTA did not wait for: a refusal is held and given at the next step the MTA waits for
(MAIL), as for every no-reply step (glue.AclMilter._reply).
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any

log = logging.getLogger("aclmilter")

_here = threading.local()


def bind(connection: Any) -> None:
    """Make `connection` (a glue.AclMilter) the one this libmilter thread works for."""
    _here.connection = connection


def _hook(previous: Any) -> Any:
    def hook(etype: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        connection = getattr(_here, "connection", None)
        if (connection is not None and tb is None and isinstance(exc, UnicodeDecodeError)
                and isinstance(exc.object, bytes)):
            try:
                if connection.undecodable(exc.object):
                    return
            except Exception:  # report it, never raise into pymilter's C code
                log.exception("handling an undecodable value failed")
        previous(etype, exc, tb)
    hook.aclmilter = True          # type: ignore[attr-defined]
    return hook


def install() -> None:
    """Put the hook in front of sys.excepthook (once; called by glue.register)."""
    if not getattr(sys.excepthook, "aclmilter", False):
        sys.excepthook = _hook(sys.excepthook)
