"""Pieces of the supervising master and the tainted-bytes edge that need no daemon."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys

from aclmilter.clients.redis import to_wire
from aclmilter.service import undecodable
from aclmilter.service.liveconns import LiveConnections
from aclmilter.service.wiretext import safe_text
from aclmilter.service.workers import death_cause


def test_live_connections_are_shared_with_the_parent() -> None:
    live = LiveConnections(3)
    pid = os.fork()
    if pid == 0:                      # the child counts into slot 1, as a worker does
        live.bind(1)
        for _ in range(5):
            live.opened()
        live.closed()
        os._exit(0)
    os.waitpid(pid, 0)
    assert [live.get(0), live.get(1), live.get(2)] == [0, 4, 0]
    live.reset(1)
    assert live.get(1) == 0


def test_death_cause_names_the_signal() -> None:
    pid = os.fork()
    if pid == 0:
        faulthandler.disable()        # pytest's handler would print a dump for the signal
        os.kill(os.getpid(), signal.SIGSEGV)
        os._exit(0)                   # not reached
    _, raw = os.waitpid(pid, 0)
    assert death_cause(raw) == "SIGSEGV"
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    _, raw = os.waitpid(pid, 0)
    assert death_cause(raw) == "exit 3"


def test_wire_forms_keep_the_bytes() -> None:
    text = b"a\xff@ex\xfeample.org".decode("utf-8", "surrogateescape")
    assert to_wire(text) == b"a\xff@ex\xfeample.org"
    assert to_wire(7) == 7 and to_wire(b"x") == b"x"
    assert safe_text(text) == "a\\xff@ex\\xfeample.org"
    assert safe_text("café") == "café" and safe_text(5) == 5


class _Conn:
    def __init__(self, handles: bool) -> None:
        self.handles = handles
        self.seen: list[bytes] = []

    def undecodable(self, raw: bytes) -> bool:
        self.seen.append(raw)
        return self.handles


def test_excepthook_hands_pymilters_decode_error_to_the_connection() -> None:
    reported: list[object] = []
    saved = sys.excepthook
    sys.excepthook = lambda *a: reported.append(a[1])
    try:
        undecodable.install()
        undecodable.install()                     # once only
        conn = _Conn(handles=True)
        undecodable.bind(conn)
        err = UnicodeDecodeError("utf-8", b"bad\xff.example", 3, 4, "invalid start byte")
        sys.excepthook(UnicodeDecodeError, err, None)
        assert conn.seen == [b"bad\xff.example"] and reported == []
        # raised by Python code (it has a traceback): not pymilter's report, passed on
        try:
            b"\xff".decode()
        except UnicodeDecodeError as exc:
            sys.excepthook(UnicodeDecodeError, exc, exc.__traceback__)
        assert len(conn.seen) == 1 and len(reported) == 1
        # a connection that declines it: pymilter's report is printed as before
        undecodable.bind(_Conn(handles=False))
        sys.excepthook(UnicodeDecodeError, err, None)
        assert len(reported) == 2
    finally:
        undecodable.bind(None)
        sys.excepthook = saved
