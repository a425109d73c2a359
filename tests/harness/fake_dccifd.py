# SPDX-License-Identifier: GPL-3.0-or-later
"""A protocol-faithful fake dccifd for tests (no DCC code: written from dccifd(8)).

It listens on a UNIX socket or on TCP loopback (IPv4 or IPv6), records the exact bytes of
every request, and answers as dccifd does: the overall letter, one letter per recipient, then
(per the options line) the X-DCC header and a blank line, the rewritten message, or nothing.
Requests dccifd would refuse (unknown option, `<>\\ruser`, >1024 recipients, a line over 8 KB,
EOF before the end of the recipients) are closed without a reply, like dccifd.

Behaviours (`Behaviour.mode`) script the failures a client must survive: `answer` (normal),
`close` (read the request, close without a reply), `garbage` (send `raw`), `slow` (wait
`delay` seconds or until stopped, then answer), `early_t` (answer `T\\n\\n` right after the
options line and close without reading on), `raw` (send `raw` after reading the request).

Use in-process:

    with FakeDccifd.unix(tmp_path / "dccifd") as fake:      # or FakeDccifd.tcp("::1")
        fake.script.append(Behaviour("G"))
        ... settings = {"dccifd_address": fake.address}
        fake.requests[0].raw

or as a subprocess: `python -m tests.harness.fake_dccifd --unix PATH --verdict G --record F`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

OPTION_WORDS = frozenset({
    "header", "body", "cksums", "query", "spam", "log", "grey-off", "no-grey", "grey-query",
    "no-reject", "rcvd-next", "rcvd-nxt",
})
MAX_RCPTS = 1024
MAX_LINE = 8192
#: Upper bound on how long one connection may take to deliver its request (bounded loops).
READ_LIMIT = 30.0
DEFAULT = object()


def fold_header(name: str, tokens: list[str], width: int = 78) -> str:
    """Build `name: tok tok ...`, breaking before a token that would pass `width` columns with
    LF + one TAB, as dccifd folds its X-DCC header."""
    lines = [f"{name}:"]
    for tok in tokens:
        if len(lines[-1]) + 1 + len(tok) > width and len(lines[-1]) > len(name) + 1:
            lines.append("\t" + tok)
        else:
            lines[-1] += " " + tok
    return "\n".join(lines)


def header_of_size(size: int = 240, brand: str = "FAKE") -> str:
    """A folded X-DCC header exactly `size` bytes long (dccifd's maximum is 240)."""
    tokens = ["mx.fake.example", "1234;", "bulk", "Body=many", "Fuz1=many", "Fuz2=many"]
    i = 0
    while True:
        text = fold_header(f"X-DCC-{brand}-Metrics", tokens)
        if len(text) >= size - 8:
            break
        tokens.append(f"rep{i}=1")
        i += 1
    pad = size - len(text) - 1
    if pad < 1:
        raise ValueError("cannot reach that size")
    tokens.append("x" * pad)
    text = fold_header(f"X-DCC-{brand}-Metrics", tokens)
    if len(text) != size:  # the padding token moved to a new line: shorten it to fit
        tokens[-1] = "x" * (pad - (len(text) - size))
        text = fold_header(f"X-DCC-{brand}-Metrics", tokens)
    assert len(text) == size, (len(text), size)
    return text


@dataclass
class Behaviour:
    """How the fake answers one connection."""

    verdict: str = "A"                    # A R G T S (or anything, to play a broken dccifd)
    rcpts: str | None = None              # per-recipient letters; None = what dccifd would send
    header: object = DEFAULT              # X-DCC text (folds as \n\t); None = no header
    cksums: tuple[str, ...] = ()          # lines after the header in cksums mode
    mode: str = "answer"                  # answer | close | garbage | raw | slow | early_t
    raw: bytes = b""                      # bytes for garbage/raw modes
    delay: float = 0.0                    # seconds for slow mode (cut short by stop())


@dataclass
class Request:
    """One request as received: the exact bytes and the fields as dccifd parses them."""

    raw: bytes
    options: tuple[str, ...] = ()
    client: str = ""
    helo: str = ""
    sender: str = ""
    recipients: list[tuple[str, str]] = field(default_factory=list)
    message: bytes = b""
    refused: str = ""                     # why dccifd would close without a reply ("" = fine)
    half_closed: bool = False


def _strip_cr(line: bytes) -> bytes:
    # dccifd removes every trailing CR from envelope lines.
    return line.rstrip(b"\r")


def parse_request(raw: bytes) -> Request:
    """Parse a request the way dccifd does; `refused` names the reason it would hang up."""
    req = Request(raw)
    pos = 0
    lines: list[bytes] = []
    while True:
        nl = raw.find(b"\n", pos)
        if nl < 0:
            req.refused = "truncated request"
            return req
        line = raw[pos:nl]
        pos = nl + 1
        if len(line) >= MAX_LINE:
            req.refused = "buffer overrun"
            return req
        if len(lines) >= 4 and _strip_cr(line) == b"":
            break
        lines.append(line)
    text = [_strip_cr(x).decode("utf-8", "surrogateescape") for x in lines]
    req.options = tuple(w.lower() for w in text[0].split())
    for word in req.options:
        if word not in OPTION_WORDS:
            req.refused = f"unrecognized option value: {word!r}"
            return req
    req.client, req.helo, req.sender = text[1], text[2], text[3]
    for item in text[4:]:
        addr, _, user = item.partition("\r")
        if addr == "" or (addr == "<>" and user):
            req.refused = "null recipient address"
            return req
        req.recipients.append((addr, user))
    if len(req.recipients) > MAX_RCPTS:
        req.refused = "too many recipients"
    req.message = raw[pos:]
    return req


def _insert_header(message: bytes, header: str) -> bytes:
    """dccifd's body mode: drop old X-DCC-*-Metrics headers, add ours before the blank line."""
    crlf = message.count(b"\r\n") * 2 > message.count(b"\n")
    eol = b"\r\n" if crlf else b"\n"
    head, sep, body = message.replace(b"\r\n", b"\n").partition(b"\n\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n") if head else []:
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().startswith(b"x-dcc-") and b"-metrics:" in line.lower().split(b" ")[0]
        if not skipping:
            kept.append(line)
    kept.extend(header.encode().split(b"\n"))
    out = eol.join(kept) + eol + eol
    rest = body.replace(b"\n", eol) if crlf else body
    return out + rest


def build_answer(req: Request, how: Behaviour) -> bytes:
    """The bytes dccifd would send for this request and behaviour (normal answer mode)."""
    n = len(req.recipients)
    if how.rcpts is not None:
        rcpts = how.rcpts
    elif how.verdict == "G":
        rcpts = "G" * n
    elif how.verdict in ("R", "T"):
        rcpts = "R" * n
    else:
        rcpts = "A" * n
    out = f"{how.verdict}\n{rcpts}\n".encode()
    header = how.header
    if header is DEFAULT:
        header = None if n == 0 else fold_header(
            "X-DCC-FAKE-Metrics", ["mx.fake.example", "1234;", "Body=1", "Fuz1=1", "Fuz2=1"])
    if "body" in req.options:
        msg = req.message
        return out + (_insert_header(msg, str(header)) if header else msg)
    if "header" in req.options or "cksums" in req.options:
        block = ""
        if header:
            block += f"{header}\n"
        if "cksums" in req.options:
            block += "".join(f"{line}\n" for line in how.cksums)
        return out + block.encode() + b"\n"
    return out


class FakeDccifd:
    """A threaded fake dccifd on a UNIX socket or a loopback TCP port; stop() ends it cleanly."""

    def __init__(self, sock: socket.socket, address: str, path: Path | None = None) -> None:
        self._sock = sock
        self.address = address                  # the value for settings.dccifd_address
        self.path = path
        self.script: list[Behaviour] = []       # consumed one per connection
        self.default = Behaviour()              # used when the script is empty
        self.requests: list[Request] = []
        self.connections = 0
        # Greylisting as dccifd -G on does it: the first request for a (client, sender,
        # recipient) triple starts an embargo (answer G) unless it says `grey-query` (only
        # ask, change nothing) or `grey-off`; a triple already embargoed stays G.
        self.greylisting = False
        self.embargoed: set[tuple[str, str, str]] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="fake-dccifd", daemon=True)

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def unix(cls, path: str | os.PathLike) -> "FakeDccifd":
        path = Path(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o666)
        sock.listen(16)
        return cls(sock, str(path), path)

    @classmethod
    def tcp(cls, host: str = "127.0.0.1", port: int = 0) -> "FakeDccifd":
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(16)
        return cls(sock, f"{host} {sock.getsockname()[1]}")

    def __enter__(self) -> "FakeDccifd":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._sock.settimeout(0.1)
        self._acceptor.start()

    def stop(self) -> None:
        """Stop accepting, cut slow answers short, join every thread, remove the socket file."""
        self._stop.set()
        self._acceptor.join(timeout=10)
        for t in list(self._threads):
            t.join(timeout=10)
        self._sock.close()
        if self.path is not None and self.path.exists():
            self.path.unlink()

    # ---- serving ---------------------------------------------------------------------------
    def _next(self) -> Behaviour:
        with self._lock:
            self.connections += 1
            return self.script.pop(0) if self.script else self.default

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn, self._next()), daemon=True)
            self._threads.append(t)
            t.start()

    def _read_request(self, conn: socket.socket, first_line_only: bool = False) -> tuple[bytes, bool]:
        """Read until EOF (the client's half-close); bounded by READ_LIMIT and stop()."""
        data = bytearray()
        conn.settimeout(0.1)
        waited = 0.0
        while not self._stop.is_set() and waited < READ_LIMIT:
            if first_line_only and b"\n" in data:
                return bytes(data), False
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                waited += 0.1
                continue
            except OSError:
                return bytes(data), False
            if not chunk:
                return bytes(data), True
            data += chunk
        return bytes(data), False

    def _serve(self, conn: socket.socket, how: Behaviour) -> None:
        with conn:
            if how.mode == "early_t":
                raw, _ = self._read_request(conn, first_line_only=True)
                self._record(Request(raw, refused="answered T before reading the envelope"))
                self._send(conn, b"T\n\n")
                return
            raw, eof = self._read_request(conn)
            req = parse_request(raw)
            req.half_closed = eof
            self._record(req)
            if req.refused or not eof or how.mode == "close":
                return
            if how.mode == "slow":
                self._stop.wait(how.delay)
                if self._stop.is_set():
                    return
            if how.mode in ("garbage", "raw"):
                self._send(conn, how.raw)
                return
            if self.greylisting:
                how = self._greylist(req, how)
            self._send(conn, build_answer(req, how))

    def _greylist(self, req: Request, how: Behaviour) -> Behaviour:
        """The answer under greylisting; embargoes new triples unless grey-query/grey-off."""
        if "grey-off" in req.options or "no-grey" in req.options:
            return how
        triples = {(req.client.partition("\r")[0], req.sender, addr) for addr, _ in req.recipients}
        with self._lock:
            known = triples & self.embargoed
            if "grey-query" not in req.options:
                self.embargoed |= triples
        new = triples - known
        if new and "grey-query" not in req.options:
            return Behaviour("G", header=how.header)
        if known:
            return Behaviour("G", header=how.header)
        return how

    def _record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    @staticmethod
    def _send(conn: socket.socket, data: bytes) -> None:
        try:
            conn.settimeout(5)
            conn.sendall(data)
        except OSError:
            pass  # the client gave up first: nothing to do


# ---- subprocess entry point ------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM; print the address on stdout; append requests as JSON lines."""
    ap = argparse.ArgumentParser(description="fake dccifd for tests")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix", help="UNIX socket path")
    where.add_argument("--tcp", nargs=2, metavar=("HOST", "PORT"), help="loopback address and port (0: any)")
    ap.add_argument("--verdict", default="A")
    ap.add_argument("--rcpts", default=None)
    ap.add_argument("--mode", default="answer")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--record", help="file to append one JSON line per request to")
    args = ap.parse_args(argv)
    if args.tcp and args.tcp[0] not in ("127.0.0.1", "::1"):
        ap.error("loopback only")
    fake = FakeDccifd.unix(args.unix) if args.unix else FakeDccifd.tcp(args.tcp[0], int(args.tcp[1]))
    fake.default = Behaviour(args.verdict, args.rcpts, mode=args.mode, delay=args.delay)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    fake.start()
    print(fake.address, flush=True)
    seen = 0
    while not done.wait(0.1):
        if args.record:
            with fake._lock:
                new = fake.requests[seen:]
            seen += len(new)
            with open(args.record, "a", encoding="utf-8") as fh:
                for req in new:
                    fh.write(json.dumps({"raw": req.raw.decode("utf-8", "surrogateescape"),
                                         "refused": req.refused}) + "\n")
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
