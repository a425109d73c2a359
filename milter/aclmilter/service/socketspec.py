"""Parse `--socket` specifications and prepare the listening socket's surroundings."""

from __future__ import annotations

import contextlib
import grp
import os
import re
import socket
from dataclasses import dataclass

_INET = re.compile(r"^(inet6?):(\d{1,5})(?:@(.+))?\Z")


@dataclass(frozen=True)
class SocketSpec:
    """A milter listening address as libmilter understands it."""

    kind: str            # "unix", "inet" or "inet6"
    path: str = ""       # unix only
    port: int = 0        # inet/inet6 only
    host: str = ""       # inet/inet6 only; "" means any address (libmilter's default)

    @property
    def libmilter(self) -> str:
        """The connection string for smfi_setconn."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"{self.kind}:{self.port}" + (f"@{self.host}" if self.host else "")

    @property
    def listen_port(self) -> str:
        """What the session records as the listening port ("" for unix sockets)."""
        return "" if self.kind == "unix" else str(self.port)

    def __str__(self) -> str:
        return self.libmilter


def wake_listener(spec: SocketSpec, timeout: float = 1.0) -> None:
    """Open and at once close one connection to our own listening socket (errors ignored).

    With pre-forked workers every worker waits on the one listener; a worker that lost the
    race for a connection sits in a blocking accept() holding libmilter's listener lock, and
    libmilter's stop waits for that lock. A connection that goes nowhere frees it.
    """
    with contextlib.suppress(OSError):
        if spec.kind == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(spec.path)
            finally:
                s.close()
            return
        host = spec.host or ("::1" if spec.kind == "inet6" else "127.0.0.1")
        if host in ("0.0.0.0", "::"):
            host = "::1" if host == "::" else "127.0.0.1"
        socket.create_connection((host, spec.port), timeout=timeout).close()


def parse(text: str) -> SocketSpec:
    """Parse `unix:/path`, `local:/path`, `/path`, `inet:PORT@HOST`, `inet6:PORT@HOST`.

    Raises ValueError with a message naming the accepted forms.
    """
    t = text.strip()
    if t.startswith(("unix:", "local:")):
        path = t.split(":", 1)[1]
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: a unix socket path must be absolute")
        return SocketSpec("unix", path=path)
    if t.startswith("/"):
        return SocketSpec("unix", path=t)
    m = _INET.match(t)
    if m:
        port = int(m.group(2))
        if not 0 < port < 65536:
            raise ValueError(f"{text!r}: port out of range")
        host = (m.group(3) or "").strip("[]")
        return SocketSpec(m.group(1), port=port, host=host)
    raise ValueError(f"{text!r}: expected unix:/path, inet:PORT@HOST or inet6:PORT@HOST")


def parse_mode(text: str) -> int:
    """Parse an octal file mode such as `0660` (ValueError if outside 0..0777)."""
    mode = int(text, 8)
    if not 0 <= mode <= 0o777:
        raise ValueError(f"mode {text!r} out of range")
    return mode


def apply_unix_permissions(spec: SocketSpec, mode: int, group: str | None) -> None:
    """Give the unix socket its mode and group so the MTA (e.g. user postfix) can connect.

    libmilter creates the socket with the process umask; an explicit chmod makes the mode
    independent of the umask the service manager happened to set.
    """
    if spec.kind != "unix":
        return
    if group:
        gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
        os.chown(spec.path, -1, gid)
    os.chmod(spec.path, mode)
