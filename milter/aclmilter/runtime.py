"""The policy in force and its services; swapped atomically on reload.

A connection pins the snapshot it started with, so a reload never changes the rules in the
middle of an SMTP session and never drops a connection. An invalid policy is refused and the
old one stays in force.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PolicyErrors
from .mode import Mode
from .policy.loader import load_file
from .policy.model import Policy
from .policy.needs import Needs, analyse
from .services import Services

log = logging.getLogger("aclmilter")

#: Old services are closed this long after a reload, when their connections are long gone.
OLD_SERVICES_GRACE = 300.0


@dataclass(frozen=True)
class Snapshot:
    policy: Policy
    services: Services
    generation: int
    needs: Needs            # which milter steps and content this policy uses (negotiation)


class Runtime:
    """Holds the current (policy, services) pair for the service and the dry run."""

    def __init__(self, policy_path: str | Path, *, overrides: dict[str, Any] | None = None,
                 monitor: bool | None = None, metrics: Any = None, services_factory: Any = None,
                 simulate: bool = False, update: bool = False) -> None:
        self.policy_path = Path(policy_path)
        # A simulation (`aclmilter test`, `aclmilter bh`) leaves shared state alone: checks run
        # only when an ACL uses them, DCC asks with `query grey-query`, no DMARC history line
        # or failure report, no delay; ratelimit and Redis writes only with `update`.
        self.simulate = simulate
        self.update = update
        self.overrides = overrides or {}
        #: monitor mode from the command line (`serve --dry-run`); None: the policy's settings.dry_run
        self.monitor_flag = monitor
        self.metrics = metrics
        self._services_factory = services_factory or (lambda settings: Services(settings, self.overrides))
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def load(self) -> Snapshot:
        """Load the policy for the first time. Raises PolicyErrors (or OSError)."""
        snap = self._build(1)
        with self._lock:
            self._snapshot = snap
        return snap

    def _build(self, generation: int) -> Snapshot:
        policy = load_file(self.policy_path)
        services = self._services_factory(policy.settings)
        services.metrics = self.metrics
        return Snapshot(policy, services, generation, analyse(policy))

    def current(self) -> Snapshot:
        """The snapshot new connections use."""
        snap = self._snapshot
        if snap is None:
            raise RuntimeError("policy not loaded")
        return snap

    @property
    def monitor(self) -> bool:
        """Monitor mode (mode.Mode.monitor) from the command line, else from the current
        policy's settings.dry_run."""
        return self.monitor_for(self.current())

    def monitor_for(self, snap: Snapshot) -> bool:
        """Monitor mode from the command line, else from that snapshot's settings.dry_run."""
        if self.monitor_flag is not None:
            return self.monitor_flag
        return bool(snap.policy.settings.get("dry_run"))

    def mode_for(self, snap: Snapshot, *, trace: bool = False, simulate: bool | None = None) -> Mode:
        """The Mode of a session working with `snap` (`simulate` None: this runtime's)."""
        simulate = self.simulate if simulate is None else simulate
        return Mode(monitor=self.monitor_for(snap), simulate=simulate, writes=not simulate or self.update,
                    trace=trace)

    def reload(self) -> list[str]:
        """Re-read the policy. Returns [] on success, else the error lines (old policy kept)."""
        old = self.current()
        try:
            snap = self._build(old.generation + 1)
        except PolicyErrors as exc:
            lines = [str(e) for e in exc.errors]
            for line in lines:
                log.error("reload refused: %s", line)
            return lines
        except OSError as exc:
            log.error("reload refused: cannot read %s: %s", self.policy_path, exc)
            return [f"{self.policy_path}: {exc}"]
        except Exception as exc:  # noqa: BLE001 - the loader reports positions; this is the last net
            line = f"{self.policy_path}:1:1: cannot check this policy ({type(exc).__name__}: {exc})"[:300]
            log.error("reload refused: %s", line)
            return [line]
        with self._lock:
            self._snapshot = snap
        timer = threading.Timer(OLD_SERVICES_GRACE, old.services.close)
        timer.daemon = True
        timer.start()
        log.info("policy %s reloaded (generation %d); %s", self.policy_path, snap.generation,
                 snap.needs.summary())
        return []
