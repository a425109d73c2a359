"""An SMTP sink for integration tests: Postfix delivers here, tests read what arrived.

The sink runs aiosmtpd in a thread of the test process (no subprocess to stop), listens on
loopback only and records every delivery in memory as a `Delivery` (envelope + raw bytes).

Typical use (module-scoped, shared with a `tests.harness.postfix.Postfix` instance)::

    with Sink() as sink:                     # picks a free port
        ...                                  # Postfix relays to sink.port
        got = sink.wait_for(1, timeout=20)   # bounded wait, raises TimeoutError
        assert got[0].header("X-Foo") == "bar"

API (stable; other feature tests rely on it): `Sink(host, port)`, `start()`, `stop()`,
`port`, `deliveries` (copy of the list), `count`, `clear()`, `wait_for(n, timeout)`,
`wait_for_rcpt(address, timeout)`, and the `Delivery` fields/methods below.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import threading
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller

from .procs import free_port

_LOOPBACK = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Delivery:
    """One message as the sink received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes                      # the message exactly as transmitted (CRLF line ends)
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[tuple[str, ...], ...] = ()
    peer: tuple = ()
    helo: str | None = None
    received_at: float = field(default=0.0, compare=False)

    @property
    def message(self) -> email.message.Message:
        """The parsed message (compat32 policy, so header values come back as sent)."""
        return email.message_from_bytes(self.data)

    def headers(self, name: str) -> list[str]:
        """All values of header `name` in order, unfolded (CRLF+WSP joined to one line)."""
        values = self.message.get_all(name) or []
        return [" ".join(str(v).replace("\r\n", "\n").split("\n")).strip() for v in values]

    def header(self, name: str) -> str | None:
        """The first value of header `name` (unfolded), or None."""
        values = self.headers(name)
        return values[0] if values else None

    def header_names(self) -> list[str]:
        """Header field names in order (to check positions of added headers)."""
        return list(self.message.keys())

    @property
    def body(self) -> bytes:
        """The body bytes after the blank line."""
        head, sep, body = self.data.partition(b"\r\n\r\n")
        return body if sep else b""


class _Handler:
    """aiosmtpd handler that appends each message to the sink and wakes waiters."""

    def __init__(self, sink: "Sink") -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(list(rcpt_options))
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        delivery = Delivery(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(raw),
            mail_options=tuple(envelope.mail_options or ()),
            rcpt_options=tuple(tuple(o) for o in (envelope.rcpt_options or ())),
            peer=tuple(session.peer or ()),
            helo=session.host_name,
            received_at=time.time(),
        )
        self.sink._record(delivery)
        return "250 2.0.0 Ok: stored by test sink"


class Sink:
    """In-process aiosmtpd sink on loopback; records deliveries, lets tests wait for them."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, smtputf8: bool = False) -> None:
        if host not in _LOOPBACK:
            raise ValueError("the sink listens on loopback only")
        self.host = host
        self.port = port or free_port()
        self.smtputf8 = smtputf8          # offer SMTPUTF8 (RFC 6531) so Postfix relays EAI mail
        self._items: list[Delivery] = []
        self._cond = threading.Condition()
        self._controller: Controller | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Sink":
        """Start listening; returns when the port accepts connections."""
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port,
                                      decode_data=False, data_size_limit=64 * 1024 * 1024,
                                      ready_timeout=10, enable_SMTPUTF8=self.smtputf8)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop the listener thread (idempotent)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> "Sink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- results ---------------------------------------------------------------------------
    def _record(self, delivery: Delivery) -> None:
        with self._cond:
            self._items.append(delivery)
            self._cond.notify_all()

    @property
    def deliveries(self) -> list[Delivery]:
        """A copy of everything received so far, oldest first."""
        with self._cond:
            return list(self._items)

    @property
    def count(self) -> int:
        with self._cond:
            return len(self._items)

    def clear(self) -> None:
        """Forget recorded deliveries (call between tests sharing one sink)."""
        with self._cond:
            self._items.clear()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[Delivery]:
        """Wait until at least `n` deliveries arrived; return them all. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._items) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"sink got {len(self._items)} of {n} messages in {timeout}s")
                self._cond.wait(min(left, 0.5))
            return list(self._items)

    def wait_for_rcpt(self, address: str, timeout: float = 30.0) -> Delivery:
        """Wait for a delivery whose envelope recipients include `address` (case-insensitive)."""
        deadline = time.monotonic() + timeout
        want = address.lower()
        with self._cond:
            while True:
                for d in self._items:
                    if want in (r.lower() for r in d.rcpt_tos):
                        return d
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no delivery to {address} within {timeout}s")
                self._cond.wait(min(left, 0.5))
