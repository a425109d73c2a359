"""smtp-source for DKIM-signed mail: `n` messages over `c` concurrent SMTP clients, one per connection.

Postfix's smtp-source cannot send a given message, so issue 23's peer benchmark sends with
this instead: messages from alice@bench.example (SPF passes loopback, DKIM key sel1, DMARC
p=reject in bench/zones/bench.example.zone), signed once at start by dkimpy with the tests'
sel1 key, each with its own Message-ID. Bounded: every socket has a timeout and every client
sends a fixed number of messages. Returns the messages the server accepted with 250.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DOMAIN = "bench.example"
SENDER = f"sender@{DOMAIN}"
RCPT = "rcpt@bench.test"


def signed_messages(count: int, size: int) -> list[bytes]:
    """`count` distinct signed messages of about `size` bytes, dot-stuffed, ending CRLF.CRLF."""
    import dkim

    key = (ROOT / "tests" / "fixtures" / "dmarc" / "dkim-sel1.private").read_bytes()
    out = []
    line = b"x" * 70 + b"\r\n"
    for i in range(count):
        head = (f"From: Alice <alice@{DOMAIN}>\r\nTo: {RCPT}\r\nSubject: bench {i}\r\n"
                f"Message-ID: <b{i}@{DOMAIN}>\r\nDate: Mon, 7 Dec 2026 06:00:00 +0000\r\n").encode()
        body = line * max(1, (size - len(head)) // len(line))
        msg = head + b"\r\n" + body
        sig = dkim.sign(msg, b"sel1", DOMAIN.encode(), key, canonicalize=(b"relaxed", b"relaxed"),
                        include_headers=[b"from", b"to", b"subject", b"message-id", b"date"])
        out.append(sig + msg + b".\r\n")
    return out


class _Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""

    def reply(self) -> int:
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line[3:4] != b"-":
                return int(line[:3])

    def cmd(self, data: bytes) -> int:
        self.sock.sendall(data)
        return self.reply()


def _one(port: int, msg: bytes) -> bool:
    c = _Client(port)
    try:
        if c.reply() != 220 or c.cmd(b"EHLO bench.example\r\n") != 250:
            return False
        if c.cmd(f"MAIL FROM:<{SENDER}>\r\n".encode()) != 250 or c.cmd(f"RCPT TO:<{RCPT}>\r\n".encode()) != 250:
            return False
        if c.cmd(b"DATA\r\n") != 354:
            return False
        ok = c.cmd(msg) == 250
        c.sock.sendall(b"QUIT\r\n")
        return ok
    finally:
        c.sock.close()


def send(port: int, n: int, c: int, msgs: list[bytes]) -> int:
    """Send `n` messages over `c` threads; return how many were accepted."""
    accepted = [0] * c

    def worker(k: int) -> None:
        for i in range(k, n, c):
            try:
                accepted[k] += _one(port, msgs[i % len(msgs)])
            except OSError:
                pass

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    return sum(accepted)
