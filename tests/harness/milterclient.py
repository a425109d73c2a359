"""A blocking milter-protocol client (the MTA side) for protocol tests and load generation.

Built on the PyPI `miltertest` codec (`encode_msg`/`decode_msg`) but, unlike its
`MilterConnection`, it honours what the milter negotiated: steps the milter asked to skip
(SMFIP_NO*) are not sent, and steps marked no-reply (SMFIP_NR_*) are not waited for. Header
and body frames are built here from bytes, so 8-bit and arbitrary header names can be sent.

    with MilterClient("inet:127.0.0.1:9900") as mc:
        mc.connect("[203.0.113.7]", "4", 4711, "203.0.113.7", macros={"j": "mx"})
        mc.helo("client.example"); mc.mail("<a@example.org>"); mc.rcpt("<b@example.test>")
        mc.data(); mc.header("Subject", "hi"); mc.eoh(); mc.body(b"hello\\r\\n")
        ans = mc.eom()     # Answer(action="continue"|"accept"|"reject"|..., reply=..., mods=[...])
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from miltertest import codec
from miltertest import constants as C

#: Final answers to a command, by response code.
FINAL = {C.SMFIR_ACCEPT: "accept", C.SMFIR_CONTINUE: "continue", C.SMFIR_DISCARD: "discard",
         C.SMFIR_REJECT: "reject", C.SMFIR_TEMPFAIL: "tempfail", C.SMFIR_REPLYCODE: "reply",
         C.SMFIR_SKIP: "skip", C.SMFIR_SHUTDOWN: "shutdown", C.SMFIR_CONN_FAIL: "conn_fail"}

#: Macro stage codes as sent in SMFIC_MACRO.
STAGE_CMD = {"connect": C.SMFIC_CONNECT, "helo": C.SMFIC_HELO, "mail": C.SMFIC_MAIL,
             "rcpt": C.SMFIC_RCPT, "data": C.SMFIC_DATA, "eoh": C.SMFIC_EOH, "eom": C.SMFIC_BODYEOB}


@dataclass
class Answer:
    """The milter's answer to one command."""

    action: str                              # continue, accept, reject, tempfail, discard, reply, ...
    reply: str | None = None                 # SMFIR_REPLYCODE text ("550 5.7.1 text")
    mods: list[tuple[str, dict]] = field(default_factory=list)   # (code, fields) edits at EOM
    sent: bool = True                        # False when the step was skipped (SMFIP_NO*)

    @property
    def code(self) -> int | None:
        """The SMTP reply code of a REPLYCODE answer."""
        return int(self.reply[:3]) if self.reply else None

    @property
    def refused(self) -> bool:
        return self.action in ("reject", "tempfail") or (self.action == "reply" and self.reply is not None)

    def headers_added(self) -> list[tuple[str, str]]:
        return [(m["name"], m["value"]) for c, m in self.mods if c in (C.SMFIR_ADDHEADER, C.SMFIR_INSHEADER)]

    def rcpts_deleted(self) -> list[str]:
        return [m["rcpt"] for c, m in self.mods if c == C.SMFIR_DELRCPT]


def _frame(cmd: str, payload: bytes) -> bytes:
    return struct.pack("!Lc", len(payload) + 1, cmd.encode()) + payload


def _cstr(value: bytes | str) -> bytes:
    return (value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value) + b"\0"


def open_socket(spec: str, timeout: float) -> socket.socket:
    """Connect to `unix:/path`, `inet:PORT@HOST`, `inet:HOST:PORT` or `inet6:PORT@HOST`."""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(rest)
        return s
    if "@" in rest:
        port, host = rest.split("@", 1)
    else:
        host, port = rest.rsplit(":", 1)
    host = host.strip("[]")
    if not host.startswith("127.") and host not in ("::1", "localhost"):
        raise ValueError("test traffic goes to loopback only")
    s = socket.create_connection((host, int(port)), timeout)
    return s


class MilterClient:
    """One MTA-side milter connection (blocking)."""

    def __init__(self, spec: str, timeout: float = 30.0, actions: int = C.SMFI_V6_ACTS,
                 protocol: int = C.SMFI_V6_PROT) -> None:
        self.spec = spec
        self.timeout = timeout
        self.offer_actions = actions
        self.offer_protocol = protocol
        self.sock: socket.socket | None = None
        self.buf = b""
        self.outq = b""          # macro frames wait here and leave with the next command
        self.actions = 0
        self.protocol = 0
        self.symlists: dict[int, str] = {}
        self.closed_by_milter = False

    # ---- connection --------------------------------------------------------------------------
    def open(self) -> "MilterClient":
        """Connect and negotiate (SMFIC_OPTNEG)."""
        self.sock = open_socket(self.spec, self.timeout)
        if self.sock.family != socket.AF_UNIX:
            # like Postfix, never let Nagle hold a small frame back: the client side would
            # otherwise add its own 40 ms delayed-ACK stalls to the measurement
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(codec.encode_optneg(self.offer_actions, self.offer_protocol))
        cmd, msg = self._read()
        if cmd != C.SMFIC_OPTNEG:
            raise RuntimeError(f"expected OPTNEG, got {cmd!r}")
        self.actions, self.protocol = msg["actions"], msg["protocol"]
        # libmilter appends the setsymlist lists after the 3 fields; miltertest's codec would
        # call that "too long", so OPTNEG is decoded by hand in _read
        return self

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.sendall(codec.encode_msg(C.SMFIC_QUIT))
            except OSError:
                pass
            self.sock.close()
            self.sock = None

    def __enter__(self) -> "MilterClient":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- low level ---------------------------------------------------------------------------
    def _recv(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            self.closed_by_milter = True
            raise ConnectionError("milter closed the connection")
        self.buf += data

    def _read(self) -> tuple[str, dict]:
        while True:
            if len(self.buf) >= 5 and self.buf[4:5] == C.SMFIC_OPTNEG.encode():
                (length,) = struct.unpack("!L", self.buf[:4])
                if len(self.buf) >= 4 + length:
                    body = self.buf[5:4 + length]
                    self.buf = self.buf[4 + length:]
                    version, actions, protocol = struct.unpack("!LLL", body[:12])
                    rest = body[12:]
                    while len(rest) >= 4:
                        (where,) = struct.unpack("!L", rest[:4])
                        text, _, rest = rest[4:].partition(b"\0")
                        self.symlists[where] = text.decode()
                    return C.SMFIC_OPTNEG, {"version": version, "actions": actions, "protocol": protocol}
            else:
                try:
                    cmd, msg, self.buf = codec.decode_msg(self.buf)
                    return cmd, msg
                except codec.MilterIncomplete:
                    pass
            self._recv()

    def _answer(self) -> Answer:
        """Read until a final response; collect modification requests on the way."""
        mods: list[tuple[str, dict]] = []
        while True:
            cmd, msg = self._read()
            if cmd == C.SMFIR_PROGRESS:
                continue
            if cmd in FINAL:
                reply = msg.get("text") if cmd == C.SMFIR_REPLYCODE else None
                if cmd == C.SMFIR_REPLYCODE:
                    reply = f"{msg['smtpcode']} {msg['text']}"
                return Answer(FINAL[cmd], reply, mods)
            mods.append((cmd, msg))

    def send_raw(self, data: bytes) -> None:
        """Send data (with any queued macro frames in the same write, as Postfix does)."""
        assert self.sock is not None
        self.sock.sendall(self.outq + data)
        self.outq = b""

    def _step(self, frame: bytes, skip_flag: int, nr_flag: int) -> Answer:
        if skip_flag and self.protocol & skip_flag:
            return Answer("continue", sent=False)
        self.send_raw(frame)
        if nr_flag and self.protocol & nr_flag:
            return Answer("continue")
        return self._answer()

    def macros(self, stage: str, values: Mapping[str, str] | None) -> None:
        """Send SMFIC_MACRO for a stage (no reply expected)."""
        if not values:
            return
        payload = STAGE_CMD[stage].encode() + b"".join(_cstr(k) + _cstr(v) for k, v in values.items())
        self.outq += _frame(C.SMFIC_MACRO, payload)

    # ---- SMTP steps --------------------------------------------------------------------------
    def connect(self, hostname: str, family: str = "4", port: int = 0, address: str = "",
                macros: Mapping[str, str] | None = None) -> Answer:
        """SMFIC_CONNECT; family '4', '6', 'L' (unix) or 'U' (unknown)."""
        self.macros("connect", macros)
        if family == "U":
            payload = _cstr(hostname) + b"U"
        else:
            payload = _cstr(hostname) + family.encode() + struct.pack("!H", port) + _cstr(address)
        return self._step(_frame(C.SMFIC_CONNECT, payload), C.SMFIP_NOCONNECT, C.SMFIP_NR_CONN)

    def helo(self, name: str, macros: Mapping[str, str] | None = None) -> Answer:
        self.macros("helo", macros)
        return self._step(_frame(C.SMFIC_HELO, _cstr(name)), C.SMFIP_NOHELO, C.SMFIP_NR_HELO)

    def mail(self, sender: str, *params: str, macros: Mapping[str, str] | None = None) -> Answer:
        self.macros("mail", macros)
        payload = b"".join(_cstr(a) for a in (sender, *params))
        return self._step(_frame(C.SMFIC_MAIL, payload), C.SMFIP_NOMAIL, C.SMFIP_NR_MAIL)

    def rcpt(self, rcpt: str, *params: str, macros: Mapping[str, str] | None = None) -> Answer:
        self.macros("rcpt", macros)
        payload = b"".join(_cstr(a) for a in (rcpt, *params))
        return self._step(_frame(C.SMFIC_RCPT, payload), C.SMFIP_NORCPT, C.SMFIP_NR_RCPT)

    def data(self, macros: Mapping[str, str] | None = None) -> Answer:
        self.macros("data", macros)
        return self._step(_frame(C.SMFIC_DATA, b""), C.SMFIP_NODATA, C.SMFIP_NR_DATA)

    def header(self, name: bytes | str, value: bytes | str) -> Answer:
        return self._step(_frame(C.SMFIC_HEADER, _cstr(name) + _cstr(value)), C.SMFIP_NOHDRS, C.SMFIP_NR_HDR)

    def headers(self, pairs: Sequence[tuple[bytes | str, bytes | str]]) -> list[Answer]:
        return [self.header(n, v) for n, v in pairs]

    def eoh(self, macros: Mapping[str, str] | None = None) -> Answer:
        self.macros("eoh", macros)
        return self._step(_frame(C.SMFIC_EOH, b""), C.SMFIP_NOEOH, C.SMFIP_NR_EOH)

    def body(self, data: bytes, chunk: int = C.MILTER_CHUNK_SIZE) -> list[Answer]:
        """Send the body in chunks (bytes pass through unchanged, 8-bit included)."""
        out = []
        for i in range(0, len(data), chunk):
            out.append(self._step(_frame(C.SMFIC_BODY, data[i:i + chunk]), C.SMFIP_NOBODY, C.SMFIP_NR_BODY))
        return out

    def eom(self, macros: Mapping[str, str] | None = None) -> Answer:
        self.macros("eom", macros)
        self.send_raw(_frame(C.SMFIC_BODYEOB, b""))
        return self._answer()

    def abort(self) -> None:
        """SMFIC_ABORT: end the transaction (no reply)."""
        self.send_raw(_frame(C.SMFIC_ABORT, b""))

    def quit_nc(self) -> None:
        """SMFIC_QUIT_NC: end this SMTP session, a new one follows on this milter connection."""
        self.send_raw(_frame(C.SMFIC_QUIT_NC, b""))

    # ---- convenience ---------------------------------------------------------------------------
    def message(self, sender: str, rcpts: Sequence[str], headers: Sequence[tuple[str, str]],
                body: bytes, macros: Mapping[str, Mapping[str, str]] | None = None) -> Answer:
        """MAIL, RCPT..., DATA, headers, EOH, body, EOM; stops at the first refusal."""
        m = macros or {}
        ans = self.mail(sender, macros=m.get("mail"))
        if ans.refused:
            return ans
        ok = 0
        for r in rcpts:
            ra = self.rcpt(r, macros=m.get("rcpt"))
            ok += not ra.refused
        if not ok:
            return ra
        ans = self.data(macros=m.get("data"))
        if ans.refused:
            return ans
        self.headers(headers)
        self.eoh()
        self.body(body)
        return self.eom(macros=m.get("eom"))
