"""Dependency health for the metrics: every call to DNS, Redis, dccifd or a scanner reports
whether it worked and how long it took (`Metrics.dependency`).

`watched(metrics, name, failures)` wraps one call. Only the exceptions in `failures` (the
client's "cannot answer now" errors) count as the dependency being down; a negative answer
(NXDOMAIN, a Redis miss) is a working dependency. Without metrics (tests, `aclmilter test`)
nothing is timed.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator


@contextlib.contextmanager
def watched(metrics: Any, name: str, failures: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Time the enclosed call to dependency `name` and report up/down to `metrics` (if any)."""
    if metrics is None:
        yield
        return
    started = time.monotonic()
    ok, report = True, True
    try:
        yield
    except failures:
        ok = False
        raise
    except BaseException:
        report = False       # cancelled (an early lookup its message no longer needs): no answer
        raise
    finally:
        if report:
            metrics.dependency(name, ok, time.monotonic() - started)
