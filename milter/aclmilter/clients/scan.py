# SPDX-License-Identifier: GPL-3.0-or-later
"""The content-scanner interface and the transport its backends share.

A backend (clients/spamd.py, clients/rspamd.py) turns a message plus its envelope into a
`ScanReport` (score, required score, spam or not, rules that fired) or raises `ScannerError`
for anything that is not an answer: refused connection, timeout, protocol error. The `scan`
check (checks/scan.py, registered in conditions/bmi.py) wraps that into a `ScanResult`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .. import lazy
from ..validators import bounded_number
from ..errors import SyntaxProblem

if TYPE_CHECKING:  # pragma: no cover
    import socket
else:
    socket = lazy.module("socket")     # on the first connection, never for `aclmilter check` (lazy.py)

SCANNER_TYPES = ("spamd", "rspamd")
DEFAULT_TIMEOUT = 20.0
DEFAULT_MAX_SIZE = 4 << 20


class ScannerError(Exception):
    """The scanner gave no usable answer (down, timeout, protocol error, server error)."""


@dataclass(frozen=True)
class Envelope:
    """What the scanner may know besides the message (rspamd uses it; spamd ignores it)."""

    client_address: str = ""
    client_name: str = ""
    helo: str = ""
    sender: str = ""
    recipients: tuple[str, ...] = ()
    queue_id: str = ""


@dataclass(frozen=True)
class ScanReport:
    """The scanner's answer: facts only, no decision.

    `is_spam` is the scanner's own spam flag (spamd: score >= required; rspamd: an action of
    reject, add header or rewrite subject). `rules` are the rule/symbol names that fired, in the
    scanner's order; `rule_scores` holds their scores where the backend reports them.
    """

    backend: str
    score: float
    threshold: float
    is_spam: bool
    rules: tuple[str, ...] = ()
    action: str | None = None
    rule_scores: tuple[tuple[str, float], ...] = ()


class Scanner(Protocol):
    """A backend: one blocking scan with the deadline it was configured with."""

    name: str

    def scan(self, message: bytes, envelope: Envelope) -> ScanReport:
        """Return the report; raise ScannerError when there is no usable answer."""
        ...  # pragma: no cover


# ---- endpoints and the stream transport shared by the backends ----------------------------
@dataclass(frozen=True)
class Endpoint:
    """Where a scanner listens: a unix socket path, or a TCP host and port."""

    path: str | None = None
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return self.path if self.path else f"{self.host}:{self.port}"


def parse_endpoint(text: str, default_port: int, allow_http: bool = False) -> Endpoint:
    """Parse "/path.sock", "host:port", "[v6]:port" (and "http://host:port" when allowed).

    Raises SyntaxProblem for anything else, including https (no TLS to a local scanner).
    """
    t = str(text).strip()
    if not t or any(c in t for c in "\r\n\0 "):
        raise SyntaxProblem("address: a socket path or host:port is expected")
    if t.startswith("/"):
        return Endpoint(path=t)
    if "://" in t:
        scheme, _, rest = t.partition("://")
        if not allow_http or scheme.lower() != "http":
            raise SyntaxProblem(f"address: scheme {scheme!r} is not supported here")
        t = rest.rstrip("/")
        if "/" in t:
            raise SyntaxProblem("address: a URL path is not supported (the backend chooses it)")
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise SyntaxProblem("address: bad [IPv6]:port")
        port_text = rest[1:] if rest else ""
    elif t.count(":") == 1:
        host, _, port_text = t.partition(":")
    elif ":" in t:
        raise SyntaxProblem("address: write IPv6 addresses as [addr]:port")
    else:
        host, port_text = t, ""
    if not host:
        raise SyntaxProblem("address: a host is required")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SyntaxProblem(f"address: bad port {port_text!r}")
        port = int(port_text)
    else:
        port = default_port
    return Endpoint(host=host, port=port)


def exchange(endpoint: Endpoint, request: bytes, timeout: float, *, half_close: bool = False,
             max_reply: int = 8 << 20) -> bytes:
    """Send one request, read the reply to EOF, all within `timeout` seconds.

    `half_close` shuts our sending side after the request (spamd wants it; rspamd takes an
    early EOF for an aborted client and drops the request).

    Raises ScannerError on refusal, timeout (the deadline covers connect, send and every
    read), or a reply larger than `max_reply`.
    """
    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        return remaining

    try:
        if endpoint.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(left())
            try:
                sock.connect(endpoint.path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=left())
        with sock:
            sock.settimeout(left())
            sock.sendall(request)
            if half_close:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            chunks: list[bytes] = []
            size = 0
            while True:
                sock.settimeout(left())
                chunk = sock.recv(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_reply:
                    raise ScannerError(f"{endpoint}: reply larger than {max_reply} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except (socket.timeout, TimeoutError):
        raise ScannerError(f"{endpoint}: timeout after {timeout:g}s") from None
    except OSError as exc:
        raise ScannerError(f"{endpoint}: {exc.strerror or exc}") from None


# ---- the scanner part of settings.bmi ------------------------------------------------------
@dataclass(frozen=True)
class ScannerConfig:
    """settings.bmi.scanner, validated."""

    type: str
    endpoint: Endpoint
    timeout: float = DEFAULT_TIMEOUT
    max_size: int = DEFAULT_MAX_SIZE
    command: str = "symbols"          # spamd only: SYMBOLS or REPORT
    user: str | None = None           # spamd only: the SPAMC User header


_SCANNER_KEYS = ("type", "address", "timeout", "max_size", "command", "user")


def parse_scanner(raw: Any) -> ScannerConfig:
    """Validate settings.bmi.scanner (closed schema); raise SyntaxProblem naming the bad key."""
    if not isinstance(raw, dict):
        raise SyntaxProblem("bmi.scanner must be a mapping with type and address")
    unknown = [k for k in raw if k not in _SCANNER_KEYS]
    if unknown:
        raise SyntaxProblem(f"bmi.scanner: unknown key {unknown[0]!r} (known: {', '.join(_SCANNER_KEYS)})")
    kind = raw.get("type")
    if kind not in SCANNER_TYPES:
        raise SyntaxProblem(f"bmi.scanner.type: one of {', '.join(SCANNER_TYPES)} is expected, not {kind!r}")
    if "address" not in raw:
        raise SyntaxProblem("bmi.scanner.address is required")
    if kind == "spamd":
        endpoint = parse_endpoint(raw["address"], 783)
    else:
        endpoint = parse_endpoint(raw["address"], 11333, allow_http=True)
    timeout = _number(raw.get("timeout", DEFAULT_TIMEOUT), "timeout", 0.001, 300)
    max_size = int(_number(raw.get("max_size", DEFAULT_MAX_SIZE), "max_size", 1, 1 << 30))
    command = str(raw.get("command", "symbols")).lower()
    if command not in ("symbols", "report"):
        raise SyntaxProblem("bmi.scanner.command: symbols or report is expected")
    if kind != "spamd" and ("command" in raw or "user" in raw):
        raise SyntaxProblem("bmi.scanner: command and user apply to spamd only")
    user = raw.get("user")
    if user is not None:
        user = str(user)
        if not user or any(ord(c) <= 32 or c == "\x7f" for c in user):
            raise SyntaxProblem("bmi.scanner.user: a user name without spaces or control characters")
    return ScannerConfig(kind, endpoint, float(timeout), max_size, command, user)


def _number(value: Any, key: str, low: float, high: float) -> float:
    return float(bounded_number(value, f"bmi.scanner.{key}", low, high))


# ---- what the scanner is sent ---------------------------------------------------------------
def header_block(headers: list[tuple[str, str]]) -> bytes:
    """Rebuild the header section from the milter's (name, value) pairs, CRLF line ends.

    Postfix hands values without the space after the colon and folds with a bare LF; the
    scanner should see the message as it will be stored, so each header becomes
    "Name: value" with every line break normalised to CRLF.
    """
    out = bytearray()
    for name, value in headers:
        text = value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
        out += f"{name}: {text}\r\n".encode("utf-8", "surrogateescape")
    return bytes(out)


def assemble_message(headers: list[tuple[str, str]], body: bytes) -> bytes:
    """Return the whole message (headers, blank line, body) as the scanner expects it."""
    return header_block(headers) + b"\r\n" + body
