# SPDX-License-Identifier: GPL-3.0-or-later
"""SpamAssassin spamd client: a sans-I/O SPAMC/1.5 codec and a thin transport.

Request: `SYMBOLS SPAMC/1.5` (or `REPORT`), `Content-length`, optional `User`, blank line,
the message. Reply: `SPAMD/1.x <code> <text>`, a `Spam: True|False ; <score> / <required>`
header, a blank line, then the comma-separated rule names (SYMBOLS) or the report text
whose table lists `points RULE description` (REPORT).
"""

from __future__ import annotations

import re

from .scan import Endpoint, Envelope, ScanReport, ScannerError, exchange

_STATUS = re.compile(rb"^SPAMD/(\d+)\.(\d+) +(\d+) *(.*)$")
_SPAM = re.compile(r"^\s*(true|false|yes|no)\s*;\s*(-?\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)\s*$", re.I)
_RULE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}\Z")
_REPORT_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Za-z0-9_.\-]{1,128})(?:\s|$)")
COMMANDS = ("SYMBOLS", "REPORT")


def encode_request(command: str, message: bytes, user: str | None = None) -> bytes:
    """Return the SPAMC/1.5 request bytes; ValueError for an unknown command or unsafe user."""
    command = command.upper()
    if command not in COMMANDS:
        raise ValueError(f"unsupported spamd command {command!r}")
    head = [f"{command} SPAMC/1.5", f"Content-length: {len(message)}"]
    if user is not None:
        # The user name is configuration, but a protocol line must never carry CR/LF.
        if not user or any(ord(c) <= 32 or c == "\x7f" for c in user):
            raise ValueError("spamd user must be a word without control characters")
        head.append(f"User: {user}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + message


def parse_response(data: bytes, command: str = "SYMBOLS") -> ScanReport:
    """Decode a spamd reply into a ScanReport.

    Raises ScannerError for an empty or malformed reply, a non-zero spamd status (EX_* codes)
    or a missing `Spam:` header.
    """
    if not data:
        raise ScannerError("spamd closed the connection without a reply")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    m = _STATUS.match(lines[0])
    if not m:
        raise ScannerError(f"spamd: unexpected status line {lines[0][:80]!r}")
    code = int(m.group(3))
    if code != 0:
        raise ScannerError(f"spamd: status {code} {m.group(4).decode('ascii', 'replace')[:80]}")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name, colon, value = raw.decode("latin-1").partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    spam = headers.get("spam")
    sm = _SPAM.match(spam or "")
    if not sm:
        raise ScannerError(f"spamd: missing or bad Spam header {spam!r}")
    is_spam = sm.group(1).lower() in ("true", "yes")
    score, threshold = float(sm.group(2)), float(sm.group(3))
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        body = body[: int(length)]
    text = body.decode("utf-8", "replace")
    if command.upper() == "REPORT":
        scores = _report_rules(text)
        rules = tuple(name for name, _ in scores)
    else:
        rules = tuple(r.strip() for r in text.strip().split(",") if _RULE.match(r.strip()))
        scores = ()
    return ScanReport("spamd", score, threshold, is_spam, rules, None, scores)


def _report_rules(text: str) -> tuple[tuple[str, float], ...]:
    """Rules from the REPORT table: the lines after the `---- ----` separator."""
    out: list[tuple[str, float]] = []
    in_table = False
    for line in text.splitlines():
        if re.match(r"^-{3,}\s+-{3,}", line):
            in_table = True
            continue
        if not in_table:
            continue
        m = _REPORT_LINE.match(line)
        if m:
            out.append((m.group(2), float(m.group(1))))
    return tuple(out)


class SpamdScanner:
    """Blocking spamd backend: one connection per scan, bounded by `timeout` seconds."""

    name = "spamd"

    def __init__(self, endpoint: Endpoint, timeout: float, command: str = "symbols",
                 user: str | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.command = command.upper()
        self.user = user

    def scan(self, message: bytes, envelope: Envelope) -> ScanReport:
        """Return spamd's report; raise ScannerError when spamd gives no usable answer."""
        request = encode_request(self.command, message, self.user)
        return parse_response(exchange(self.endpoint, request, self.timeout, half_close=True), self.command)
