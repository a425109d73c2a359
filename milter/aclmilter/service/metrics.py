"""Prometheus metrics for the daemon, reached by sessions and checks via `services.metrics`.

Only the daemon builds a `Metrics`; elsewhere `services.metrics` is None and callers skip.
With `--workers N` every worker writes to a shared multiprocess directory and the parent
serves the merged view (prometheus-client multiprocess mode); see `start_server`.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .reloader import signals_blocked

#: Latency buckets in seconds: milter callbacks are sub-millisecond to a few seconds (DNS).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The counters and histograms aclmilter exports (names prefixed `aclmilter_`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        kw: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self.messages = Counter("aclmilter_messages",
                                "Messages and refused transactions by the log line's decision and stage",
                                ["decision", "stage"], **kw)
        self.statements = Counter("aclmilter_statement_hits", "ACL statements that decided or matched",
                                  ["where"], **kw)
        self.checks = Counter("aclmilter_check_results", "Check results, once per check per message",
                              ["check", "result"], **kw)
        self.check_seconds = Histogram("aclmilter_check_seconds", "Check latency (each check computed once)",
                                       ["check"], buckets=BUCKETS, **kw)
        # Dependency health: every call to DNS, Redis, dccifd or a scanner reports here.
        self.dep_up = Gauge("aclmilter_dependency_up", "1 if the latest call to the dependency worked, else 0",
                            ["dependency"], multiprocess_mode="livemin", **kw)
        self.dep_errors = Counter("aclmilter_dependency_errors", "Calls to a dependency that failed",
                                  ["dependency"], **kw)
        self.dep_seconds = Histogram("aclmilter_dependency_seconds", "Latency of calls to a dependency",
                                     ["dependency"], buckets=BUCKETS, **kw)
        self.callback_seconds = Histogram("aclmilter_callback_seconds", "Milter callback latency",
                                          ["stage"], buckets=BUCKETS, **kw)
        self.dns_timeouts = Counter("aclmilter_dns_timeouts", "DNS queries that timed out", **kw)
        self.internal_errors = Counter("aclmilter_internal_errors", "Exceptions caught in callbacks",
                                       ["where"], **kw)
        self.reloads = Counter("aclmilter_reloads", "Policy reloads by outcome", ["outcome"], **kw)
        # livesum: with --workers the parent shows the sum over the workers alive.
        self.cache_entries = Gauge("aclmilter_cache_entries", "Entries held by a shared cache", ["cache"],
                                   multiprocess_mode="livesum", **kw)

    # The methods below are the interface sessions, the engine and checks call.
    def message(self, decision: str, stage: str) -> None:
        """Count one finished message or refused transaction (service.logline.finish only):
        `decision` is accept/reject/tempfail/discard/drop/aborted, `stage` where it arose."""
        self.messages.labels(decision, stage).inc()

    def statement_hit(self, where: str) -> None:
        """Count a hit of the ACL statement at `where` (file:line)."""
        self.statements.labels(where).inc()

    def check_result(self, check: str, value: Any) -> None:
        """Count one check result (value is an enum or text)."""
        self.checks.labels(check, str(getattr(value, "value", value))).inc()

    def check_latency(self, check: str, seconds: float) -> None:
        self.check_seconds.labels(check).observe(seconds)

    def callback_latency(self, stage: str, seconds: float) -> None:
        self.callback_seconds.labels(stage).observe(seconds)

    def dependency(self, name: str, ok: bool, seconds: float) -> None:
        """One call to a dependency (dns, redis, dccifd, scanner:NAME): up/down, error, latency.
        `ok` is False only when the dependency failed (timeout, refused, garbage), never for
        an answer that is merely negative (NXDOMAIN, a Redis miss)."""
        self.dep_up.labels(name).set(1 if ok else 0)
        if not ok:
            self.dep_errors.labels(name).inc()
        self.dep_seconds.labels(name).observe(seconds)

    def dns_timeout(self) -> None:
        self.dns_timeouts.inc()

    def internal_error(self, where: str) -> None:
        self.internal_errors.labels(where).inc()

    def cache_size(self, cache: str, entries: int) -> None:
        """Record how many entries cache `cache` (dns, spf_results, ...) holds now."""
        self.cache_entries.labels(cache).set(entries)

    def reload(self, ok: bool) -> None:
        self.reloads.labels("ok" if ok else "refused").inc()


class SupervisorMetrics:
    """Counters the supervising master keeps about its workers (crashes, restarts, lost work)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        kw: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self.deaths = Counter("aclmilter_worker_deaths", "Workers that died on their own, by cause "
                              "(signal name or exit N)", ["cause"], **kw)
        self.restarts = Counter("aclmilter_worker_restarts", "Workers forked to replace a dead one", **kw)
        self.lost = Counter("aclmilter_worker_lost_connections",
                            "MTA connections open in a worker when it died", **kw)

    def worker_died(self, cause: str, lost: int) -> None:
        self.deaths.labels(cause).inc()
        self.lost.inc(lost)

    def worker_restarted(self) -> None:
        self.restarts.inc()


def parse_addr(text: str) -> tuple[str, int]:
    """Parse `ADDR:PORT`, `[v6]:PORT` or `PORT` (loopback) for --metrics."""
    t = text.strip()
    if t.isdigit():
        return "127.0.0.1", int(t)
    host, sep, port = t.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics {text!r}: expected ADDR:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def start_server(addr: tuple[str, int], multiprocess_dir: str | None = None) -> None:
    """Serve /metrics on addr in a daemon thread (merging worker files in multiprocess mode).

    The server thread never receives SIGTERM/SIGINT/SIGHUP/SIGUSR1 (see
    `reloader.signals_blocked`): a stop or reload sent while it runs still takes effect.
    """
    registry = REGISTRY
    if multiprocess_dir:
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    with signals_blocked():
        start_http_server(addr[1], addr[0], registry=registry)


def multiprocess_enabled() -> bool:
    """True when prometheus-client was imported with PROMETHEUS_MULTIPROC_DIR set."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
