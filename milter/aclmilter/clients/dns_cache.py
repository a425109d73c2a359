# SPDX-License-Identifier: GPL-3.0-or-later
"""A bounded, thread-safe cache whose entries expire after their DNS TTL.

One cache is shared by every milter thread through the `dns` service, so a burst of
messages from one sender costs one set of queries, not one per message. The size bound
keeps a flood of distinct (attacker-chosen) names from growing memory without limit: the
least recently used entry goes first. Expired entries are also swept by time (at most every
`sweep_every` seconds, on the next get or put), so a cache that stays under its cap does not
keep a burst of dead entries for ever. The entry count is reported to the metrics (if any)
as `aclmilter_cache_entries{cache=NAME}`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    """Map keys to values for `ttl` seconds each, holding at most `max_entries` entries."""

    def __init__(self, max_entries: int = 10000, clock: Callable[[], float] = time.monotonic, *,
                 name: str = "", metrics: Callable[[], Any] | None = None, sweep_every: float = 30.0) -> None:
        self.max_entries = max(0, int(max_entries))
        self.name = name
        self._clock = clock
        self._metrics = metrics or (lambda: None)
        self._sweep_every = sweep_every
        self._next_sweep = clock() + sweep_every
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def _sweep(self, now: float) -> bool:
        """Drop every expired entry if a sweep is due (caller holds the lock); True if one ran."""
        if now < self._next_sweep:
            return False
        self._next_sweep = now + self._sweep_every
        for key in [k for k, (expires, _) in self._data.items() if expires <= now]:
            del self._data[key]
        return True

    def _report(self) -> None:
        metrics = self._metrics() if self.name else None
        if metrics is not None:
            metrics.cache_size(self.name, len(self._data))

    def get(self, key: Hashable) -> V | None:
        """Return the live value for `key`, or None when absent or expired (expired ones are dropped)."""
        now = self._clock()
        with self._lock:
            if self._sweep(now):
                self._report()
            hit = self._data.get(key)
            if hit is None:
                return None
            expires, value = hit
            if expires <= now:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V, ttl: float) -> None:
        """Store `value` for `ttl` seconds; a TTL of 0 or less stores nothing (RFC 1035: do not cache)."""
        if ttl <= 0 or self.max_entries == 0:
            return
        now = self._clock()
        with self._lock:
            self._sweep(now)
            self._data[key] = (now + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
            self._report()

    def clear(self) -> None:
        """Forget everything (used on policy reload)."""
        with self._lock:
            self._data.clear()
            self._report()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
