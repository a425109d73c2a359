"""Socket options libmilter does not set: TCP_NODELAY on the listening socket.

libmilter writes an end-of-message reply as several small writes (headers, recipients, the
final action). Without TCP_NODELAY, Nagle holds the later writes until the MTA ACKs the first
one, and the MTA delays that ACK by up to 40 ms: every message then costs one or two 40 ms
stalls. libmilter never exposes the accepted sockets, but Linux copies TCP_NODELAY from the
listening socket to each accepted one (checked under gVisor too), so setting it once on the
listener after smfi_opensocket covers every MTA connection.
"""

from __future__ import annotations

import contextlib
import os
import socket

from .socketspec import SocketSpec


def listening_fds(spec: SocketSpec) -> list[int]:
    """File descriptors of this process's listening TCP sockets bound to spec's port."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
        except OSError:
            continue
        # socket.socket(fileno=dup) shares the open file description, so options set on the
        # duplicate apply to libmilter's listener; closing the duplicate leaves it open.
        with contextlib.suppress(OSError):
            s = socket.socket(fileno=os.dup(fd))
            try:
                if (s.family in (socket.AF_INET, socket.AF_INET6) and s.type == socket.SOCK_STREAM
                        and s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                        and s.getsockname()[1] == spec.port):
                    found.append(fd)
            finally:
                s.close()
    return found


def set_nodelay_on_listener(spec: SocketSpec) -> int:
    """Set TCP_NODELAY on the listener(s) for spec; returns how many sockets were changed."""
    if spec.kind == "unix":
        return 0
    n = 0
    for fd in listening_fds(spec):
        s = socket.socket(fileno=os.dup(fd))
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            n += 1
        finally:
            s.close()
    return n
