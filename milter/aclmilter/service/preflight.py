"""Checks before libmilter opens the listening socket, so each failure gets a clear message.

libmilter's own errors are one generic line ("Unable to create listening socket"): it says
neither that the directory is missing, nor that another milter already listens there, nor
that the TCP port is taken. Each check here raises SocketProblem with the cause and a fix.
"""

from __future__ import annotations

import errno
import grp
import os
import socket
import stat

from .socketspec import SocketSpec


class SocketProblem(Exception):
    """The socket cannot be opened; the message names the cause and what to do."""


def check_group(group: str | None) -> None:
    """Raise SocketProblem when `--socket-group` names a group this host does not have."""
    if not group or group.isdigit():
        return
    try:
        grp.getgrnam(group)
    except KeyError:
        raise SocketProblem(f"--socket-group {group}: no such group on this host") from None


def check(spec: SocketSpec, timeout: float = 1.0) -> None:
    """Raise SocketProblem when `spec` cannot be listened on; return quietly otherwise.

    A unix socket file nobody listens on (left by a killed process) is fine: libmilter
    removes it. One that answers belongs to a running milter and is never taken over.
    """
    if spec.kind == "unix":
        _check_unix(spec.path, timeout)
    else:
        _check_inet(spec)


def _check_unix(path: str, timeout: float) -> None:
    directory = os.path.dirname(path) or "/"
    if not os.path.isdir(directory):
        raise SocketProblem(f"socket directory {directory} does not exist (the package creates "
                            f"/var/spool/postfix/aclmilter; elsewhere: install -d -o aclmilter "
                            f"-g postfix -m 0750 {directory})")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SocketProblem(f"socket directory {directory} is not writable by uid {os.getuid()}")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketProblem(f"{path} exists and is not a socket; not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return       # stale: nobody listens; libmilter replaces it
        if exc.errno == errno.EACCES:
            raise SocketProblem(f"{path}: permission denied (run as the socket's owner, "
                                f"e.g. user aclmilter)") from None
        return
    finally:
        probe.close()
    raise SocketProblem(f"socket path {path} is in use: another milter is listening on it "
                        f"(stop it first, or choose another --socket)")


def _check_inet(spec: SocketSpec) -> None:
    family = socket.AF_INET6 if spec.kind == "inet6" else socket.AF_INET
    host = spec.host or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        # the same option libmilter sets, so a port in TIME_WAIT is not reported as taken
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, spec.port))
    except socket.gaierror as exc:
        raise SocketProblem(f"cannot resolve the socket host {spec.host!r}: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SocketProblem(f"port {spec.port} on {host} is in use by another process") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise SocketProblem(f"{spec}: {host} is not an address of this host") from None
        if exc.errno == errno.EACCES:
            raise SocketProblem(f"{spec}: port {spec.port} needs privileges; use a port >= 1024") from None
        raise SocketProblem(f"{spec}: cannot bind: {exc.strerror}") from None
    finally:
        s.close()
