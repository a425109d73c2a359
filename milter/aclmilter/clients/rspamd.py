# SPDX-License-Identifier: GPL-3.0-or-later
"""rspamd client: a sans-I/O codec for HTTP `POST /checkv2` and a thin transport.

The request carries the envelope in rspamd's request headers (IP, Helo, Hostname, From, one
Rcpt per recipient, Queue-Id) and the message as the body; the reply is JSON with `score`,
`required_score`, `action` and `symbols`. HTTP/1.0 with `Connection: close` keeps the
transport trivial: one request per connection, the reply ends at EOF.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .scan import Endpoint, Envelope, ScanReport, ScannerError, exchange

PATH = "/checkv2"
#: rspamd actions that mean "this is spam" (its `no action`, `greylist` and `soft reject` do not).
SPAM_ACTIONS = ("reject", "add header", "rewrite subject")
_SYMBOL = re.compile(r"^[A-Za-z0-9_.\-]{1,128}\Z")
_STATUS = re.compile(rb"^HTTP/(\d)\.(\d) +(\d{3})(?: +(.*))?$")


def _safe(value: str) -> str | None:
    """Return value if it may be a header value on the wire; None when it holds control chars.

    Envelope data comes from the network: a CR/LF in it must never become a second header.
    """
    if not value or any(ord(c) < 32 or c == "\x7f" for c in value):
        return None
    return value


def encode_request(message: bytes, envelope: Envelope, host: str = "localhost") -> bytes:
    """Return the HTTP request for one scan (envelope fields with control characters are left out)."""
    fields: list[tuple[str, str]] = [("Host", host)]
    for name, value in (("IP", envelope.client_address), ("Hostname", envelope.client_name),
                        ("Helo", envelope.helo), ("From", envelope.sender),
                        ("Queue-Id", envelope.queue_id)):
        safe = _safe(value)
        if safe is not None:
            fields.append((name, safe))
    for rcpt in envelope.recipients:
        safe = _safe(rcpt)
        if safe is not None:
            fields.append(("Rcpt", safe))
    fields += [("Content-Length", str(len(message))), ("Connection", "close")]
    head = f"POST {PATH} HTTP/1.0\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
    return head.encode("utf-8") + message


def split_http(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Split an HTTP/1.x reply into (status, lower-cased headers, decoded body).

    Handles Content-Length, chunked transfer coding and read-to-EOF bodies. Raises
    ScannerError for a malformed reply.
    """
    if not data:
        raise ScannerError("rspamd closed the connection without a reply")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ScannerError("rspamd: reply has no header/body separator")
    lines = head.split(b"\r\n")
    m = _STATUS.match(lines[0])
    if not m:
        raise ScannerError(f"rspamd: unexpected status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name, colon, value = raw.decode("latin-1").partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    elif headers.get("content-length", "").isdigit():
        length = int(headers["content-length"])
        if len(body) < length:
            raise ScannerError("rspamd: reply body shorter than Content-Length")
        body = body[:length]
    return int(m.group(3)), headers, body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    rest = body
    for _ in range(1 << 16):   # bounded: a reply is at most a few MB
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise ScannerError("rspamd: truncated chunked body")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise ScannerError("rspamd: bad chunk size") from None
        if size == 0:
            return bytes(out)
        if len(rest) < size + 2:
            raise ScannerError("rspamd: truncated chunk")
        out += rest[:size]
        rest = rest[size + 2:]
    raise ScannerError("rspamd: too many chunks")


def parse_response(data: bytes) -> ScanReport:
    """Decode an rspamd /checkv2 reply into a ScanReport.

    Raises ScannerError for a non-200 status (with rspamd's error text), bad JSON, or a reply
    without a numeric score and required_score.
    """
    status, _headers, body = split_http(data)
    try:
        doc: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        if status != 200:
            raise ScannerError(f"rspamd: HTTP {status}") from None
        raise ScannerError("rspamd: reply is not JSON") from None
    if status != 200:
        detail = doc.get("error") if isinstance(doc, dict) else None
        raise ScannerError(f"rspamd: HTTP {status}" + (f": {str(detail)[:120]}" if detail else ""))
    if not isinstance(doc, dict):
        raise ScannerError("rspamd: reply is not a JSON object")
    score = _finite(doc.get("score"), "score")
    threshold = _finite(doc.get("required_score"), "required_score")
    action = doc.get("action")
    action = str(action).lower() if isinstance(action, str) else None
    symbols = doc.get("symbols")
    scores: list[tuple[str, float]] = []
    if isinstance(symbols, dict):
        for name, info in symbols.items():
            if not isinstance(name, str) or not _SYMBOL.match(name):
                continue   # a symbol name is scanner data; keep only plain names
            value = info.get("score", 0.0) if isinstance(info, dict) else 0.0
            scores.append((name, float(value) if isinstance(value, (int, float)) else 0.0))
    # Highest-scoring symbols first, so a truncated tracker keeps the ones that mattered.
    scores.sort(key=lambda s: (-abs(s[1]), s[0]))
    is_spam = action in SPAM_ACTIONS or score >= threshold
    return ScanReport("rspamd", score, threshold, is_spam, tuple(n for n, _ in scores), action, tuple(scores))


def _finite(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScannerError(f"rspamd: reply has no numeric {key}")
    return float(value)


class RspamdScanner:
    """Blocking rspamd backend: one HTTP/1.0 connection per scan, bounded by `timeout` seconds."""

    name = "rspamd"

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    def scan(self, message: bytes, envelope: Envelope) -> ScanReport:
        """Return rspamd's report; raise ScannerError when rspamd gives no usable answer."""
        host = "localhost" if self.endpoint.path else self.endpoint.host
        request = encode_request(message, envelope, host)
        return parse_response(exchange(self.endpoint, request, self.timeout))
