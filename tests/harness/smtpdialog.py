"""Replay an `exim -bh`-style SMTP dialogue against a real server and collect every reply line.

The dialogue is the text a client sends: one command per line; after a DATA answered with
354 the following lines up to `.` are the message. Each command is sent alone and its whole
reply read before the next one (no pipelining), so replies line up with commands. A server
that closes the connection ends the replay. Bounded: every read has a timeout.
"""

from __future__ import annotations

import socket


def _read_reply(f, lines: list[str]) -> str | None:
    """Read one (possibly multi-line) reply; return its code, or None when the server closed."""
    for _ in range(100):
        try:
            raw = f.readline()
        except ConnectionError:
            return None
        if not raw:
            return None
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return line[:3]
    return None


def replay(host: str, port: int, dialogue: str, timeout: float = 30.0) -> list[str]:
    """Send the dialogue to host:port; return every reply line, banner first."""
    out: list[str] = []
    cmds = dialogue.replace("\r\n", "\n").split("\n")
    with socket.create_connection((host, port), timeout=timeout) as s:
        f = s.makefile("rb")
        if _read_reply(f, out) is None:
            return out
        i = 0
        while i < len(cmds):
            cmd = cmds[i]
            i += 1
            if cmd == "" and i == len(cmds):
                break
            try:
                s.sendall(cmd.encode() + b"\r\n")
            except ConnectionError:
                break
            code = _read_reply(f, out)
            if code is None:
                break
            if cmd.upper().startswith("DATA") and code == "354":
                body = []
                while i < len(cmds) and cmds[i] != ".":
                    body.append(cmds[i])
                    i += 1
                i += 1
                s.sendall("".join(line + "\r\n" for line in body).encode() + b".\r\n")
                if _read_reply(f, out) is None:
                    break
            if cmd.upper() == "QUIT":
                break
    return out
