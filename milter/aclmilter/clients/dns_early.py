# SPDX-License-Identifier: GPL-3.0-or-later
"""DNS lookups started before a check needs them, run concurrently in one event-loop thread.

Why one asyncio thread with dnspython's asynchronous resolver, not a pool of threads: a
lookup nobody needs any more (the message ended, the client hung up) must stop at once, and
an asyncio task can be cancelled while it waits for its answer, where a thread blocked in a
socket read can only be abandoned until its `lifetime` runs out. One thread also keeps the
process's thread count fixed next to libmilter's own pool and costs nothing while idle; the
lookups are I/O-bound, so one thread serves any number of them.

How results stay the same as asking in sequence: an early lookup asks exactly the question
the check will ask (same A-label name, type, timeout and lifetime), classifies the answer
with `DnsClient.failed`/`typed_answer` and caches it with `DnsClient.store`. When the check
asks, `DnsClient.query` finds the answer in the cache, or joins the lookup still in flight
and waits for it no longer than its own remaining time (budget and per-message deadline
unchanged: not answered in time is a DnsTempError TIMEOUT, as it would have been).
Temporary errors (SERVFAIL, timeouts) are not cached; the joined lookup hands the same
DnsTempError to the check, and only while it is fresh (`lifetime` seconds), after which the
check asks again, exactly as it would have.

Nothing outlives its message: every lookup belongs to one `MessageLookups`, and `close()`
(called when the transaction ends) cancels the lookups still running and waits until their
tasks have finished. A message whose early answers are never read leaves only cache
entries, which a later identical question would have created anyway.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .. import lazy
from .dns import DnsAnswer, DnsClient, DnsTempError, TempReason, typed_answer
from .dns_names import BadName, cache_key, to_name
from .health import watched

# asyncio and dnspython load with the first early lookup: `aclmilter test` of a policy
# without DNS checks never pays for them (lazy.py)
if TYPE_CHECKING:     # the real modules for the type checker; at run time they load on first use
    import asyncio
    import dns.asyncresolver
    import dns.exception
    import dns.resolver
else:
    asyncio = lazy.module("asyncio")
    dns = lazy.module("dns")

#: Lookups in flight in the whole process; beyond it a lookup is simply not started early.
MAX_PENDING = 256
#: Early lookups one message may start (SPF's own limit on DNS mechanisms is 10).
MAX_PER_MESSAGE = 16
#: How long close() waits for cancelled tasks to finish (they finish within one loop turn).
_CANCEL_WAIT = 2.0

_BLOCKED_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGCHLD}

Then = Callable[["MessageLookups", DnsAnswer], None]


@dataclass(eq=False)
class _Entry:
    key: tuple[str, str]
    owner: "MessageLookups"
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    task: "asyncio.Task | None" = None
    cancelled: bool = False
    done_at: float = 0.0


class EarlyLookups:
    """The process's early-lookup runner for one DnsClient (created on first use)."""

    def __init__(self, client: DnsClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._table: dict[tuple[str, str], _Entry] = {}
        self._loop: "asyncio.AbstractEventLoop | None" = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._resolver: Any = None
        self._stopped = False          # the client was closed (reload): start nothing more
        self._stopped_thread: threading.Thread | None = None

    @classmethod
    def of(cls, client: Any) -> "EarlyLookups | None":
        """The runner of `client`, made on first use; None for a client that is not a DnsClient,
        or whose resolver is not dnspython's (a test's zone fake): early lookups ask the
        resolver's servers directly, so such a client's questions all go the ordinary way."""
        if not isinstance(client, DnsClient) or not isinstance(client.resolver, dns.resolver.Resolver):
            return None
        early = client.early
        if early is None:
            early = client.early = cls(client)
        return early

    def message(self) -> "MessageLookups":
        """A new owner for the early lookups of one message."""
        return MessageLookups(self)

    # -- the loop thread --------------------------------------------------------------------
    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop, (re)started in this process if needed (caller holds the lock).

        After a fork (the pre-forked workers) the parent's thread does not exist in the child:
        the child starts its own, and forgets lookups the parent had in flight."""
        if self._loop is not None and self._pid == os.getpid() and self._thread is not None \
                and self._thread.is_alive():
            return self._loop
        if self._pid != os.getpid():
            self._table.clear()
        import dns.asyncresolver      # only a policy with early lookups pays for asyncio + this
        sync = self.client.resolver
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = list(sync.nameservers)
        if hasattr(sync, "nameserver_ports"):
            resolver.nameserver_ports = dict(sync.nameserver_ports)
        resolver.port = sync.port
        resolver.timeout = sync.timeout
        resolver.lifetime = sync.lifetime
        resolver.cache = None
        resolver.search = []
        resolver.use_edns(0, 0, 1232)
        self._resolver = resolver
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            # signals belong to libmilter's thread (and the reloader): never to this one
            signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED_SIGNALS)
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="aclmilter-dns-early", daemon=True)
        thread.start()
        started.wait(5)
        self._loop, self._thread, self._pid = loop, thread, os.getpid()
        return loop

    def stop(self) -> None:
        """Cancel every lookup and end the loop thread (reload, shutdown)."""
        with self._lock:
            self._stopped = True
            loop, thread = self._loop, self._thread
            entries = list(self._table.values())
            self._table.clear()
            self._loop = self._thread = None
            self._stopped_thread = thread
        if loop is None or thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        self._cancel(loop, entries)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CANCEL_WAIT)
        if not thread.is_alive():
            loop.close()

    # -- starting and joining -----------------------------------------------------------------
    def start(self, owner: "MessageLookups", name: str, rdtype: str, then: Then | None = None) -> bool:
        """Start asking (name, rdtype) for `owner` unless already cached or in flight.

        Returns True when a lookup was started. Never raises for the name: one that cannot be
        a DNS name is simply not asked (the check will give it its BADNAME answer)."""
        try:
            key = (cache_key(name), rdtype)
        except BadName:
            return False
        if self.client.cache.get(key) is not None:
            return False
        qname = to_name(name, False)
        with self._lock:
            if self._stopped or owner.closed or key in self._table or len(self._table) >= MAX_PENDING \
                    or len(owner.keys) >= MAX_PER_MESSAGE:
                return False
            loop = self._running_loop()
            entry = _Entry(key, owner)
            self._table[key] = entry
            owner.keys.append(key)
        loop.call_soon_threadsafe(self._spawn, entry, qname, then)
        return True

    def join(self, key: tuple[str, str], timeout: float) -> DnsAnswer | None:
        """The early answer for `key`, waiting at most `timeout` seconds; None when there is
        no early lookup to join (the caller asks itself).

        Raises DnsTempError when the early lookup failed temporarily (fresh failures only)
        or was not answered within `timeout` — what asking directly would have raised.
        """
        with self._lock:
            entry = self._table.get(key)
        if entry is None:
            return None
        fut = entry.future
        if fut.done() and not fut.cancelled() and fut.exception() is not None \
                and time.monotonic() - entry.done_at > self.client.settings.lifetime:
            return None                  # a stale temporary failure: ask again, as in sequence
        try:
            return fut.result(timeout)
        except concurrent.futures.CancelledError:
            return None
        except concurrent.futures.TimeoutError:
            self.client._count_timeout()
            raise DnsTempError(key[0], key[1], TempReason.TIMEOUT, "no answer within the time left") from None

    def running(self) -> bool:
        """True while this runner's loop thread is alive (tests: stop() ends it)."""
        with self._lock:
            threads = (self._thread, self._stopped_thread)
        return any(t is not None and t.is_alive() for t in threads)

    def pending(self) -> int:
        """Lookups started and not finished, in the whole process (tests, metrics)."""
        with self._lock:
            return sum(1 for e in self._table.values() if not e.future.done())

    def tasks(self) -> int:
        """asyncio tasks alive in the loop thread (tests: nothing outlives its message)."""
        with self._lock:
            loop = self._loop
        if loop is None or not loop.is_running():
            return 0
        fut = asyncio.run_coroutine_threadsafe(_count_tasks(), loop)
        return fut.result(_CANCEL_WAIT)

    # -- inside the loop thread ------------------------------------------------------------------
    def _spawn(self, entry: _Entry, qname: Any, then: Then | None) -> None:
        if entry.cancelled:
            entry.future.cancel()
            return
        entry.task = asyncio.get_running_loop().create_task(self._ask(entry, qname, then))

    async def _ask(self, entry: _Entry, qname: Any, then: Then | None) -> None:
        key_name, rdtype = entry.key
        client = self.client
        try:
            with watched(client._metrics(), "dns", (DnsTempError,)):
                try:
                    ans = await self._resolver.resolve(qname, rdtype, raise_on_no_answer=False,
                                                       lifetime=client.settings.lifetime, search=False)
                except dns.exception.DNSException as exc:   # classified as the blocking path does
                    answer = client.failed(exc, key_name, rdtype)
                else:
                    answer = typed_answer(ans, key_name, rdtype)
        except asyncio.CancelledError:
            entry.future.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to whoever joins
            entry.done_at = time.monotonic()
            entry.future.set_exception(exc)
            return
        client.store(entry.key, answer)
        entry.done_at = time.monotonic()
        entry.future.set_result(answer)
        if then is not None and not entry.owner.closed:
            try:
                then(entry.owner, answer)
            except Exception:  # noqa: BLE001 - a follow-up is an optimisation, never an error
                pass

    def _cancel(self, loop: asyncio.AbstractEventLoop, entries: list[_Entry]) -> None:
        """Cancel `entries` in the loop and wait until their tasks have ended."""
        if not entries:
            return

        async def cancel_all() -> None:
            tasks = []
            for e in entries:
                e.cancelled = True
                if e.task is not None and not e.task.done():
                    e.task.cancel()
                    tasks.append(e.task)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(_CANCEL_WAIT)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass            # the loop is stopping; its daemon thread ends with it


async def _count_tasks() -> int:
    return len(asyncio.all_tasks()) - 1


class MessageLookups:
    """The early lookups of one message; `close()` when the transaction ends."""

    def __init__(self, runner: EarlyLookups) -> None:
        self.runner = runner
        self.keys: list[tuple[str, str]] = []
        self.closed = False

    def ask(self, name: str, rdtype: str, then: Then | None = None) -> bool:
        """Start (name, rdtype) now; `then(self, answer)` runs when it is answered (in the loop
        thread) to start dependent lookups. True if a lookup was started."""
        return self.runner.start(self, name, rdtype, then)

    def close(self) -> None:
        """Cancel what is still running and forget this message's lookups (waits for the
        cancellation to finish, so no task outlives the message)."""
        if self.closed:
            return
        runner = self.runner
        with runner._lock:
            self.closed = True
            mine = [runner._table.pop(k) for k in self.keys
                    if k in runner._table and runner._table[k].owner is self]
            loop = runner._loop
        running = [e for e in mine if not e.future.done()]
        if running and loop is not None and loop.is_running():
            runner._cancel(loop, running)
