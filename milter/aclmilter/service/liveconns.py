"""Open MTA connections per worker, kept in memory the supervising master can read.

When a worker dies (a crash inside libmilter, the OOM killer), its threads cannot report
anything, so each worker keeps the number of MTA connections it holds in one slot of an
anonymous shared mapping created by the master before forking. The master reads the slot of
a dead worker to log and count the connections that died with it.
"""

from __future__ import annotations

import mmap
import struct
import threading

_SLOT = struct.Struct("=q")


class LiveConnections:
    """One signed 64-bit counter per worker slot (written by its worker, read by the master)."""

    def __init__(self, slots: int) -> None:
        self._mm = mmap.mmap(-1, _SLOT.size * max(1, slots))
        self._lock = threading.Lock()
        self.slot: int | None = None

    def bind(self, slot: int) -> None:
        """In a freshly forked worker: count into `slot` from zero."""
        self.slot = slot
        self._lock = threading.Lock()    # never inherit a lock some thread of the master held
        self.reset(slot)

    def _add(self, delta: int) -> None:
        if self.slot is None:
            return
        off = self.slot * _SLOT.size
        with self._lock:
            (n,) = _SLOT.unpack_from(self._mm, off)
            _SLOT.pack_into(self._mm, off, n + delta)

    def opened(self) -> None:
        """An MTA connection started (negotiation) in this worker."""
        self._add(1)

    def closed(self) -> None:
        """An MTA connection of this worker ended (close callback)."""
        self._add(-1)

    def get(self, slot: int) -> int:
        """The connections the worker in `slot` holds (never negative)."""
        (n,) = _SLOT.unpack_from(self._mm, slot * _SLOT.size)
        return max(0, n)

    def reset(self, slot: int) -> None:
        _SLOT.pack_into(self._mm, slot * _SLOT.size, 0)
