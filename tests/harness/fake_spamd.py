"""A threaded fake spamd on a loopback TCP port that speaks SPAMC/1.5 and enforces its shape.

It answers each request with the configured verdict (`Spam: True ; score / threshold` and the
comma-separated rule names of SYMBOLS). A request that is not `SYMBOLS|REPORT SPAMC/1.x` with a
Content-length equal to the message length gets `SPAMD/1.1 76 EX_PROTOCOL`, which the client
must treat as a failed scan. stop() ends it; nothing outlives the test.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

from tests.harness.loopserver import LoopbackServer

_REQUEST = re.compile(rb"^(SYMBOLS|REPORT) SPAMC/1\.\d$")


@dataclass
class SpamdVerdict:
    spam: bool = False
    score: float = 0.0
    threshold: float = 5.0
    rules: list[str] = field(default_factory=list)


def answer(request: bytes, verdict: SpamdVerdict) -> bytes:
    """The reply bytes for one complete request (sans I/O)."""
    head, sep, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = [ln.split(b":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith(b"content-length:")]
    if not sep or not _REQUEST.match(lines[0]) or len(length) != 1 or length[0] != str(len(body)).encode():
        return b"SPAMD/1.1 76 EX_PROTOCOL\r\n\r\n"
    text = ",".join(verdict.rules).encode()
    spam = "True" if verdict.spam else "False"
    return (f"SPAMD/1.1 0 EX_OK\r\nContent-length: {len(text)}\r\n"
            f"Spam: {spam} ; {verdict.score} / {verdict.threshold}\r\n\r\n").encode() + text


class FakeSpamd(LoopbackServer):
    """Serve `verdict` on 127.0.0.1:<free port>; `requests` keeps every request received."""

    def __init__(self, verdict: SpamdVerdict) -> None:
        self.verdict = verdict
        self.requests: list[bytes] = []
        super().__init__(socket.SOCK_STREAM, "fake-spamd", timeout=0.1, backlog=8)
        self.address = f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                # The client half-closes after the message; bounded by size and by the timeout.
                try:
                    while len(data) < 50_000_000:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    self.requests.append(data)
                    conn.sendall(answer(data, self.verdict))
                except OSError:
                    continue
