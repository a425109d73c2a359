"""Say clearly why the listening socket cannot be opened, before libmilter tries.

libmilter reports every failure as "cannot opensocket", and for a unix socket it first
removes whatever is at the path — also the socket of another aclmilter that is still
serving, which then silently stops getting connections. `problem()` runs first and names
the cause: a missing directory, a path held by a live listener or by something that is not a
socket, a port another process listens on, an address not on this host.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from .socketspec import SocketSpec


def problem(spec: SocketSpec) -> str | None:
    """A one-line explanation of why `spec` cannot be listened on, or None if it looks free."""
    if spec.kind == "unix":
        return _unix_problem(spec.path)
    return _inet_problem(spec)


def _unix_problem(path: str) -> str | None:
    directory = os.path.dirname(path) or "/"
    if not os.path.isdir(directory):
        return (f"socket directory {directory} does not exist (create it, e.g. systemd "
                f"RuntimeDirectory=, or choose another --socket)")
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"socket directory {directory} is not writable by uid {os.getuid()}"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return f"{path} exists and is not a socket: remove it or choose another --socket"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return None                 # a stale socket file: libmilter replaces it
    finally:
        probe.close()
    return f"socket path {path} is in use: another process is listening on it"


def _inet_problem(spec: SocketSpec) -> str | None:
    family = socket.AF_INET6 if spec.kind == "inet6" else socket.AF_INET
    host = spec.host or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        # as libmilter does: SO_REUSEADDR, so a port left in TIME_WAIT is not "in use"
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, spec.port))
    except socket.gaierror as exc:
        return f"cannot resolve the socket host {spec.host!r}: {exc.strerror}"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {spec.port} on {host} is in use: another process is listening on it"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"address {host} is not an address of this host"
        if exc.errno == errno.EACCES:
            return f"port {spec.port} needs privileges this process does not have"
        return f"cannot listen on {spec}: {exc.strerror or exc}"
    finally:
        probe.close()
    return None
