# SPDX-License-Identifier: GPL-3.0-or-later
"""dccifd's ASCII protocol: a sans-I/O codec plus a thin socket transport with one deadline.

Written from the protocol as dccifd(8) documents it (no DCC code is used or copied).

Request (client -> dccifd), every envelope line ends in LF, `\\r` separates fields in a line:

    <options>\\n  <ip>[\\r<name>]\\n  <helo>\\n  <sender or <>>\\n  <rcpt>[\\r<user>]\\n ...  \\n
    <message as received, CRLF line ends>   then half-close (shutdown SHUT_WR)

Answer (dccifd -> client), then dccifd closes:

    <A|R|G|T|S>\\n  <one A/R/G per recipient>\\n  [X-DCC header, folded with \\n<TAB>] [cksums] \\n

Codec functions never touch a socket: `encode_envelope`, `encode_message`, `parse_answer`,
`parse_address`, `parse_options`. `DccifdClient.exchange` moves bytes and nothing else.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .. import lazy
from .health import watched

if TYPE_CHECKING:  # pragma: no cover
    import socket
else:
    socket = lazy.module("socket")     # on the first connection, never for `aclmilter check` (lazy.py)

# ---- limits dccifd enforces (it closes without a reply beyond them) -------------------------
#: dccifd refuses more recipients than this (MAX_RCPTS) by closing without an answer.
MAX_RECIPIENTS = 1024
#: dccifd reads envelope lines into an 8 KB buffer; a longer line is closed on.
MAX_ENVELOPE_LINE = 8000
#: An X-DCC header is at most 240 bytes; allow slack for cksums lines before refusing a reply.
MAX_HEADER_REPLY = 64 * 1024

#: Option words dccifd understands (anything else makes it close without a reply).
OPTION_WORDS = frozenset({
    "header", "body", "cksums", "query", "spam", "log", "grey-off", "no-grey", "grey-query",
    "no-reject", "rcvd-next", "rcvd-nxt",
})

_UNSAFE = re.compile(r"[\r\n\0]")
_HEADER_NAME = re.compile(r"^X-DCC[!-9;-~]*\Z")
_METRICS_NAME = re.compile(rb"^X-DCC-[!-9;-~]*-Metrics$", re.I)


class UnsafeField(ValueError):
    """An envelope field would break dccifd's line framing (CR, LF or NUL) or its limits."""


class ProtocolError(Exception):
    """dccifd's answer is not a well-formed reply (garbage, early close, wrong counts)."""


class TransportError(Exception):
    """dccifd could not be reached or did not finish in time (connect, send, read, deadline)."""


# ---- address and options -----------------------------------------------------------------
@dataclass(frozen=True)
class Address:
    """Where dccifd listens: a UNIX socket path, or an IP address and TCP port."""

    path: str | None = None
    host: str | None = None
    port: int = 0

    @property
    def family(self) -> int:
        if self.path is not None:
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in (self.host or "") else socket.AF_INET

    def __str__(self) -> str:
        return self.path if self.path is not None else f"{self.host} {self.port}"


def parse_address(text: str) -> Address:
    """Parse `dccifd_address`: an absolute socket path, or `<ip> <port>` (IPv4 or IPv6).

    Returns the Address; raises ValueError naming the problem (host names are refused so that
    no DNS lookup sits on the mail path, as in Exim's `<ip> <port>` form).
    """
    text = text.strip()
    if text.startswith("/"):
        if _UNSAFE.search(text):
            raise ValueError("the socket path holds a control character")
        return Address(path=text)
    parts = text.split()
    if len(parts) != 2:
        raise ValueError("an absolute socket path or `<ip> <port>` is expected")
    host, port_text = parts
    host = host.removeprefix("[").removesuffix("]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{port_text!r} is not a TCP port")
    return Address(host=str(ip), port=int(port_text))


def parse_options(text: str) -> tuple[str, ...]:
    """Parse the options line: blank-separated words dccifd knows; empty means no options.

    Returns the lower-cased words; raises ValueError for an unknown word or a comma (dccifd
    closes without answering either, which would look like an outage on every message).
    """
    if _UNSAFE.search(text):
        raise ValueError("options hold a line break")
    words = tuple(w.lower() for w in text.split())
    for word in words:
        if word not in OPTION_WORDS:
            hint = " (separate options with spaces, not commas)" if "," in word else ""
            raise ValueError(f"unknown dccifd option {word!r}{hint}")
    return words


# ---- request ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Envelope:
    """What dccifd is told about the SMTP transaction (text exactly as it will be sent).

    `client_ip` is "" when unknown (dccifd then reads the first Received: header); `sender` is
    "" for the null sender (sent as `<>`); each recipient is (address, user) with user "" for
    none.
    """

    client_ip: str
    client_name: str
    helo: str
    sender: str
    recipients: tuple[tuple[str, str], ...]


def _wire(text: str) -> bytes:
    # Strings from the milter keep undecodable bytes as surrogates; give dccifd the originals.
    return text.encode("utf-8", "surrogateescape")


def _field(what: str, text: str) -> str:
    if _UNSAFE.search(text):
        raise UnsafeField(f"{what} holds CR, LF or NUL")
    return text


def encode_envelope(options: Iterable[str], env: Envelope) -> bytes:
    """Return the request up to and including the blank line that ends the recipients.

    Raises UnsafeField when a field holds CR/LF/NUL (it would forge protocol lines), when an
    IP address is not one, when a recipient is empty, when there are more than MAX_RECIPIENTS
    recipients, or when a line exceeds dccifd's buffer. Nothing is sanitised: a refused field
    means dccifd is not asked.
    """
    words = tuple(options)
    for word in words:
        if word not in OPTION_WORDS:
            raise UnsafeField(f"unknown dccifd option {word!r}")
    lines = [" ".join(words)]
    client = ""
    if env.client_ip:
        try:
            client = str(ipaddress.ip_address(env.client_ip))
        except ValueError:
            raise UnsafeField(f"client address {env.client_ip!r} is not an IP address") from None
        if env.client_name:
            client += "\r" + _field("client name", env.client_name)
    lines.append(client)
    lines.append(_field("HELO", env.helo))
    lines.append(_field("sender", env.sender) or "<>")
    if len(env.recipients) > MAX_RECIPIENTS:
        raise UnsafeField(f"more than {MAX_RECIPIENTS} recipients")
    for address, user in env.recipients:
        if not address:
            raise UnsafeField("empty recipient address")
        line = _field("recipient", address)
        if user:
            line += "\r" + _field("recipient user", user)
        lines.append(line)
    out = b""
    for line in lines:
        raw = _wire(line)
        if len(raw) > MAX_ENVELOPE_LINE:
            raise UnsafeField(f"an envelope line is longer than {MAX_ENVELOPE_LINE} bytes")
        out += raw + b"\n"
    return out + b"\n"


def _crlf(text: str) -> bytes:
    return _wire(text.replace("\r\n", "\n").replace("\n", "\r\n"))


def encode_message(headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    """Return the message as received: `Name: value` CRLF per header, CRLF, then the body.

    Header values come from the MTA without the space after the colon; folded values keep
    their continuation lines, with every line end made CRLF. The body is sent unchanged.
    """
    out = bytearray()
    for name, value in headers:
        out += _crlf(f"{name}: {value}") + b"\r\n"
    out += b"\r\n"
    out += body
    return bytes(out)


# ---- answer ----------------------------------------------------------------------------------
class Verdict(enum.Enum):
    """dccifd's overall result for the message."""

    ACCEPT = "A"      # deliver to every recipient
    REJECT = "R"      # bulk / blacklisted: refuse
    GREYLIST = "G"    # greylist embargo: try again later
    TEMPFAIL = "T"    # DCC itself failed temporarily
    SOME = "S"        # obsolete "accept for some"; treated like A (Exim)


class RcptVerdict(enum.Enum):
    """dccifd's result for one recipient."""

    ACCEPT = "A"
    REJECT = "R"
    GREYLIST = "G"


@dataclass(frozen=True)
class Answer:
    """A parsed, well-formed dccifd reply.

    `header` is the X-DCC header exactly as dccifd built it, name included, continuation
    lines joined by `\\n` (each starting with a blank or tab), no final line end; None when
    dccifd sent none. `extra` holds the lines after the header (cksums mode).
    """

    verdict: Verdict
    recipients: tuple[RcptVerdict, ...]
    header: str | None
    extra: tuple[str, ...] = ()


def _text_line(raw: bytes) -> str:
    try:
        line = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("non-ASCII bytes in the answer") from None
    if any(ord(c) < 32 and c != "\t" or c == "\x7f" for c in line):
        raise ProtocolError("control character in the answer")
    return line


def _header_block(lines: list[str], folds: str = " \t") -> tuple[str | None, tuple[str, ...]]:
    """Split the lines after the recipient line into the X-DCC header and the rest.

    A line starting with one of `folds` continues the header. dccifd folds its header with a
    single TAB, and in `cksums` mode the checksum table that follows is right-aligned with
    leading spaces, so there only a TAB continues the header (`parse_answer`).
    """
    if not lines:
        return None, ()
    first = lines[0]
    name, sep, _ = first.partition(":")
    if not sep or not _HEADER_NAME.match(name):
        raise ProtocolError(f"expected an X-DCC header, got {first[:40]!r}")
    block = [first]
    i = 1
    while i < len(lines) and lines[i][:1] and lines[i][:1] in folds:
        block.append(lines[i])
        i += 1
    return "\n".join(block), tuple(lines[i:])


def parse_answer(data: bytes, n_recipients: int, options: Iterable[str] = ("header",)) -> Answer:
    """Parse a complete reply (everything read up to dccifd's close).

    Returns the Answer. Raises ProtocolError for anything else: an empty reply (early close),
    an unknown result letter, a recipient line whose length is not `n_recipients` or that
    holds letters other than A/R/G, a header that is not X-DCC or is missing its closing
    blank line, stray bytes, or control characters (only LF and folding whitespace pass).
    A `T` is accepted as soon as its two lines are there: dccifd may send `T\\n\\n` early,
    before reading the request.
    """
    opts = set(options)
    first, sep, rest = data.partition(b"\n")
    if not sep:
        raise ProtocolError("empty or truncated answer" if not data else "result line without line end")
    if len(first) != 1 or first.decode("latin-1") not in "AGRST":
        raise ProtocolError(f"unknown result line {first[:20]!r}")
    verdict = Verdict(first.decode("ascii"))
    second, sep, rest = rest.partition(b"\n")
    if not sep:
        raise ProtocolError("answer ends before the recipient line")
    letters = second.decode("latin-1")
    if verdict is Verdict.TEMPFAIL and letters == "" and not rest:
        # dccifd's early "T\n\n" (no DCC context): no per-recipient line, nothing else.
        return Answer(verdict, (), None)
    if len(letters) != n_recipients or any(c not in "ARG" for c in letters):
        raise ProtocolError(f"recipient line {second[:40]!r} does not give A/R/G for {n_recipients} recipients")
    rcpts = tuple(RcptVerdict(c) for c in letters)
    if "body" in opts:
        head = rest.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
        found = _body_header(head)
        return Answer(verdict, rcpts, found)
    if not ({"header", "cksums"} & opts):
        if rest:
            raise ProtocolError("bytes after the recipient line although no header was asked for")
        return Answer(verdict, rcpts, None)
    if not rest.endswith(b"\n"):
        raise ProtocolError("answer ends inside the header block")
    raw_lines = rest[:-1].split(b"\n")
    if raw_lines[-1] != b"":
        raise ProtocolError("header block is not closed by a blank line")
    lines = [_text_line(x) for x in raw_lines[:-1]]
    if any(line == "" for line in lines):
        raise ProtocolError("bytes after the blank line that ends the answer")
    # cksums: the table after the header is `extra`, never part of the header
    header, extra = _header_block(lines, "\t" if "cksums" in opts else " \t")
    if extra and "cksums" not in opts:
        raise ProtocolError(f"unexpected line after the X-DCC header: {extra[0][:40]!r}")
    return Answer(verdict, rcpts, header, extra)


def _body_header(head: bytes) -> str | None:
    """Find dccifd's X-DCC-*-Metrics header in the header section of a `body` mode answer."""
    lines = head.split(b"\n")
    for i, raw in enumerate(lines):
        if _METRICS_NAME.match(raw.split(b":", 1)[0]) and b":" in raw:
            block = [raw]
            for cont in lines[i + 1:]:
                if cont[:1] not in (b" ", b"\t"):
                    break
                block.append(cont)
            text, _ = _header_block([_text_line(x) for x in block])
            return text
    return None


# ---- transport -----------------------------------------------------------------------------
class DccifdClient:
    """Sends one request per connection to dccifd and returns the raw reply bytes.

    Thread-safe: it keeps no connection between calls. Every step (connect, send, read)
    shares one deadline of `timeout` seconds.
    """

    def __init__(self, address: Address, timeout: float = 10.0, options: tuple[str, ...] = ("header",),
                 max_reply: int = MAX_HEADER_REPLY, metrics: Callable[[], Any] = lambda: None) -> None:
        self.address = address
        self.metrics = metrics            # the daemon's Metrics, looked up per call (set late)
        self.timeout = timeout
        self.options = options
        self.max_reply = max_reply

    def exchange(self, envelope: bytes, message: bytes | Iterable[bytes], max_reply: int | None = None) -> bytes:
        """Send envelope + message, half-close, read to EOF; return what dccifd wrote.

        `message` is the bytes or an iterable of pieces (a spooled body is sent as it is
        read, never assembled in memory).

        Raises TransportError when dccifd cannot be reached, resets the connection before any
        reply, sends more than the reply limit, or the deadline passes. If dccifd stops
        reading and answers early (its `T\\n\\n`), the early reply is returned.
        """
        with watched(self.metrics(), "dccifd", (TransportError,)):
            return self._exchange(envelope, message, max_reply)

    def _exchange(self, envelope: bytes, message: bytes | Iterable[bytes], max_reply: int | None) -> bytes:
        deadline = time.monotonic() + self.timeout
        addr = self.address
        try:
            sock = socket.socket(addr.family, socket.SOCK_STREAM)
        except OSError as exc:
            raise TransportError(f"socket: {exc}") from None
        try:
            self._step(sock, deadline)
            try:
                sock.connect(addr.path if addr.path is not None else (addr.host, addr.port))
            except OSError as exc:
                raise TransportError(f"cannot connect to dccifd at {addr}: {exc}") from None
            pieces = (envelope, message)
            send_error = self._send(sock, pieces, deadline)
            return self._read(sock, deadline, send_error, max_reply or self.max_reply)
        finally:
            sock.close()

    def _step(self, sock: socket.socket, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransportError(f"dccifd at {self.address} did not answer within {self.timeout:g}s")
        sock.settimeout(left)

    def _send(self, sock: socket.socket, pieces: Iterable[Any], deadline: float) -> str | None:
        """Write every piece and half-close; a reset while writing is kept to report later.

        A piece is bytes or an iterable of bytes (read lazily, one chunk at a time).
        """
        try:
            for piece in pieces:
                for data in ((piece,) if isinstance(piece, (bytes, bytearray)) else piece):
                    view = memoryview(data)
                    while view:
                        self._step(sock, deadline)
                        sent = sock.send(view[:65536])
                        view = view[sent:]
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError) as exc:
            return f"dccifd closed the connection while we were sending: {exc}"
        except socket.timeout:
            raise TransportError(f"dccifd at {self.address} did not take the message within "
                                 f"{self.timeout:g}s") from None
        except OSError as exc:
            raise TransportError(f"sending to dccifd: {exc}") from None
        return None

    def _read(self, sock: socket.socket, deadline: float, send_error: str | None, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            self._step(sock, deadline)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise TransportError(f"dccifd at {self.address} did not answer within "
                                     f"{self.timeout:g}s") from None
            except OSError as exc:
                if chunks:
                    break
                raise TransportError(send_error or f"reading from dccifd: {exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise TransportError(f"dccifd answer longer than {limit} bytes")
        data = b"".join(chunks)
        if not data and send_error:
            raise TransportError(send_error)
        return data
