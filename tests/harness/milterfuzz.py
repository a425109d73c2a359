"""Hostile milter-protocol input: the known libmilter crash packets and a seeded fuzzer.

`crash_frames()` builds SMFIC_MACRO packets that make libmilter 8.17's smfi_getsymval read
past the end of its macro array (docs/dev/libmilter-macro-crash.md): an odd number of
NUL-terminated strings, optionally followed by an unterminated tail (dec_argv drops it, which
leaves the count odd again). A first, well-formed macro packet of the right size leaves
non-pointer bytes in the heap chunk the array is then allocated from, so the read past the
end always faults instead of depending on what the heap happened to contain.

`cases(seed, n)` yields n fuzz cases, each a list of raw frames sent after negotiation on one
connection: mutated macro packets (odd/even counts, missing NULs, unknown stages), truncated
or oversized commands, unknown command bytes and valid steps in random order. The same seed
gives the same cases.
"""

from __future__ import annotations

import random
import socket
import struct
from typing import Iterator

from .milterclient import MilterClient

#: Command bytes a real MTA sends after negotiation (O itself excluded).
COMMANDS = b"ABCDEHKLMNQRTU"
#: Stage bytes libmilter accepts in SMFIC_MACRO.
STAGES = b"CHMRTEN"


def frame(cmd: bytes, payload: bytes) -> bytes:
    """One milter packet: 4-byte length (command byte included), command, payload."""
    return struct.pack("!L", len(payload) + 1) + cmd + payload


def crash_frames(n_strings: int = 13, tail: bytes | None = None, stage: bytes = b"C") -> list[bytes]:
    """Macro packets that crash libmilter's smfi_getsymval once a callback asks for a macro.

    n_strings must be odd; `tail` (no NUL) is appended after them when given.
    """
    size = (n_strings + 1) * 8 + 7           # the argv array's heap chunk, minus malloc's header
    groom = stage + b"k\0" + b"A" * (size - 4) + b"\0"
    odd = stage + b"".join(b"k%d\0" % i for i in range(n_strings)) + (tail or b"")
    return [frame(b"D", groom), frame(b"D", stage + b"x\0y\0"), frame(b"D", odd)]


def connect_payload(host: bytes = b"fuzz.example", addr: bytes = b"203.0.113.9") -> bytes:
    return host + b"\0" + b"4" + struct.pack("!H", 4711) + addr + b"\0"


def connect_frame(host: bytes = b"fuzz.example", addr: bytes = b"203.0.113.9") -> bytes:
    return frame(b"C", connect_payload(host, addr))


def _strings(rng: random.Random) -> bytes:
    count = rng.choice((0, 1, 2, 3, 4, 12, 13, 14, 15, rng.randrange(0, 40)))
    names = (b"j", b"{daemon_name}", b"i", b"{client_addr}", b"v", b"{auth_type}", b"k")
    parts = []
    for _ in range(count):
        if rng.random() < 0.5:
            parts.append(rng.choice(names))
        else:
            parts.append(bytes(rng.randrange(1, 256) for _ in range(rng.randrange(0, 24))))
    body = b"\0".join(parts)
    return body + (b"\0" if count and rng.random() < 0.7 else b"")


def _payload(rng: random.Random, cmd: bytes) -> bytes:
    if cmd == b"D":
        stage = rng.choice(STAGES) if rng.random() < 0.9 else rng.randrange(256)
        return bytes([stage]) + _strings(rng)
    if cmd == b"C" and rng.random() < 0.5:
        return connect_payload(rng.choice((b"h", b"", b"\xff\xfe")),
                               rng.choice((b"203.0.113.9", b"::1", b"x", b"")))
    if cmd in (b"M", b"R", b"H", b"L") and rng.random() < 0.6:
        return _strings(rng)
    return bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 2, 7, rng.randrange(0, 300)))))


def cases(seed: int, n: int) -> Iterator[list[bytes]]:
    """n fuzz cases from `seed` (deterministic)."""
    rng = random.Random(seed)
    for _ in range(n):
        frames: list[bytes] = []
        for _ in range(rng.randrange(1, 7)):
            r = rng.random()
            if r < 0.45:
                cmd = b"D"
            elif r < 0.95:
                cmd = bytes([rng.choice(COMMANDS)])
            else:
                cmd = bytes([rng.randrange(256)])
            payload = _payload(rng, cmd)
            if rng.random() < 0.05:     # a length field that disagrees with the payload
                frames.append(struct.pack("!L", rng.choice((0, 1, len(payload) + 50))) + cmd + payload)
            else:
                frames.append(frame(cmd, payload))
            if rng.random() < 0.3:      # a step that makes libmilter call back into Python
                frames.append(connect_frame() if rng.random() < 0.5 else frame(b"H", b"fuzz.example\0"))
        yield frames


def send_case(spec: str, frames: list[bytes], timeout: float = 5.0) -> str:
    """Negotiate, send the frames and end our side; read until the milter closes its side.

    Returns how the connection ended: "eof" (the milter closed it), "reset" (its process died
    or it aborted), "idle" (nothing within `timeout`) or "refused" (no connection at all).
    """
    try:
        mc = MilterClient(spec, timeout=timeout).open()
    except OSError:
        return "refused"
    except RuntimeError:
        return "reset"
    assert mc.sock is not None
    try:
        mc.sock.sendall(b"".join(frames))
        mc.sock.shutdown(socket.SHUT_WR)      # libmilter sees EOF after our frames
        while True:
            if not mc.sock.recv(65536):
                return "eof"
    except socket.timeout:
        return "idle"
    except OSError:
        return "reset"
    finally:
        mc.sock.close()
