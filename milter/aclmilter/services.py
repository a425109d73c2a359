"""The one object through which DNS, Redis, the clock, scanners and other I/O reach the code.

No module globals and no monkeypatching: tests pass their own instances as overrides.
Feature modules register a factory per service name; a service is built on first use from
the policy settings and shared by every thread (factories must return thread-safe objects).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from . import lazy

if TYPE_CHECKING:  # pragma: no cover
    import random
else:
    random = lazy.module("random")     # imports hashlib: made by the first Services, not by `check`

Factory = Callable[[dict, "Services"], Any]

#: name -> factory(settings, services); filled by feature modules at import time.
FACTORIES: dict[str, Factory] = {}


def register_factory(name: str, factory: Factory) -> None:
    """Declare how to build service `name` from settings (duplicate names fail at import)."""
    if name in FACTORIES:
        raise RuntimeError(f"duplicate service factory {name!r}")
    FACTORIES[name] = factory


class Services:
    """Lazily built, shared I/O services for one loaded policy."""

    def __init__(self, settings: dict, overrides: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 log: logging.Logger | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.log = log or logging.getLogger("aclmilter")
        self._built: dict[str, Any] = dict(overrides or {})
        # Re-entrant: a factory may build another service it depends on (ratelimit -> redis).
        self._lock = threading.RLock()
        self.metrics: Any = None   # service.metrics.Metrics when serving; None in tests/dry run

    def get(self, name: str) -> Any:
        """Return service `name`, building it on first use; KeyError if nobody provides it."""
        try:
            return self._built[name]
        except KeyError:
            pass
        with self._lock:
            if name not in self._built:
                self._built[name] = FACTORIES[name](self.settings, self)
            return self._built[name]

    def has(self, name: str) -> bool:
        return name in self._built or name in FACTORIES

    def close(self) -> None:
        """Close every built service that has a close() method (on reload and shutdown)."""
        for svc in list(self._built.values()):
            close = getattr(svc, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # closing must not fail a reload
                    self.log.exception("closing a service failed")
