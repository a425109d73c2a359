"""Two scopes of state: Connection (lives for the SMTP session) and Transaction (one message).

The transaction is rebuilt at MAIL and at abort; nothing is cleaned up key by key.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

from . import lazy

# tempfile (and its `random`) is for bodies larger than memory: not imported by `aclmilter check`
tempfile = lazy.module("tempfile")


@dataclass
class ClientIdentity:
    """Who is talking to the MTA, derived once per connection (after PROXY unwrapping)."""

    address: str = ""            # real client IP, no "IPv6:" prefix; "" for a local/unknown client
    port: str = ""
    name: str = ""               # verified PTR name (Postfix {client_name}) or "" if unknown
    ptr: str = ""                # unverified PTR ({client_ptr})
    local_address: str = ""      # {daemon_addr}: where the MTA (or, proxied, the proxy) was reached
    local_port: str = ""
    daemon_name: str = ""

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The client address as an ipaddress object (IPv4-mapped IPv6 reduced to IPv4), or None."""
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            return ip.ipv4_mapped
        return ip


@dataclass
class Connection:
    """Connection-scope facts: client identity, HELO, TLS/auth, macros and `acl_c*` variables."""

    client: ClientIdentity = field(default_factory=ClientIdentity)
    hostname: str = ""                  # the hostname argument of xxfi_connect
    helo: str = ""
    macros: dict[str, str] = field(default_factory=dict)
    acl_c: dict[str, str] = field(default_factory=dict)
    tls_cipher: str = ""
    tls_version: str = ""
    auth_authen: str = ""
    auth_type: str = ""
    controls: set[str] = field(default_factory=set)      # connection-wide controls
    results: dict[str, Any] = field(default_factory=dict)  # connection-scope check results
    #: features' connection state (registry.slot(..., scope="connection")), by slot name
    slots: dict[str, Any] = field(default_factory=dict)
    listen_port: str = ""               # our listener's port (a proxy listener may be named by it)
    message_count: int = 0
    drop: bool = False                  # set once a `drop` verdict was given


@dataclass
class Recipient:
    """One envelope recipient with its own variables, verdict inputs and outcome."""

    address: str                        # without angle brackets
    params: tuple[str, ...] = ()        # ESMTP parameters (NOTIFY=, ORCPT=, ...)
    raw: str = ""                       # as the MTA sent it (with brackets) for delrcpt
    accepted: bool = True
    discarded: bool = False             # discarded by a MAIL/RCPT ACL (delete at EOM)
    vars: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)   # recipient-scope check results
    parent: str | None = None           # address this one was derived from (verdict inheritance)
    delivered: bool | None = None       # outcome of the deliver ACL (None: not run)
    #: features' recipient state (registry.slot(..., scope="recipient")), by slot name
    slots: dict[str, Any] = field(default_factory=dict)

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0] if "@" in self.address else self.address

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower() if "@" in self.address else ""


class BodySpool:
    """The message body, in memory up to a threshold, then in an unlinked temporary file."""

    def __init__(self, threshold: int = 1 << 20) -> None:
        self.threshold = threshold
        self.size = 0
        self._mem = bytearray()
        self._file: Any = None

    def write(self, chunk: bytes) -> None:
        """Append a chunk; moves to a temporary file once the threshold is crossed."""
        self.size += len(chunk)
        if self._file is None and len(self._mem) + len(chunk) > self.threshold:
            self._file = tempfile.TemporaryFile(prefix="aclmilter-body-")
            self._file.write(self._mem)
            self._mem = bytearray()
        if self._file is not None:
            self._file.write(chunk)
        else:
            self._mem += chunk

    @property
    def spooled(self) -> bool:
        return self._file is not None

    def read(self) -> bytes:
        """Return the whole body (reads the spool file back if there is one)."""
        if self._file is None:
            return bytes(self._mem)
        self._file.seek(0)
        data = self._file.read()
        self._file.seek(0, os.SEEK_END)
        return data

    def chunks(self, size: int = 1 << 16) -> Iterator[bytes]:
        """Yield the body in pieces of at most `size` bytes, without holding it all in memory.

        Reads the spool file with pread, so the write position (and a concurrent reader) is
        unaffected; every call starts again from the first byte.
        """
        if self._file is None:
            # Slices, not a memoryview: an export left by an abandoned generator would stop
            # the bytearray from growing.
            for start in range(0, len(self._mem), size):
                yield bytes(self._mem[start:start + size])
            return
        self._file.flush()
        fd, offset = self._file.fileno(), 0
        while True:
            piece = os.pread(fd, size, offset)
            if not piece:
                return
            offset += len(piece)
            yield piece

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._mem = bytearray()


@dataclass
class Transaction:
    """Transaction-scope facts: sender, recipients, headers, body, `acl_m*`, results, edits."""

    sender: str = ""                    # without brackets; "" for <>
    sender_params: tuple[str, ...] = ()
    recipients: list[Recipient] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)   # as received (name, raw value)
    body: BodySpool = field(default_factory=BodySpool)
    acl_m: dict[str, str] = field(default_factory=dict)
    queue_id: str = ""
    results: dict[str, Any] = field(default_factory=dict)          # check name -> result
    controls: dict[str, str] = field(default_factory=dict)         # message controls set
    discard_all: bool = False           # MAIL ACL discarded: later RCPTs skip the RCPT ACL
    warned: set[str] = field(default_factory=set)                  # warn log lines written once
    edits: Any = None                   # actions.Edits, created by the session
    rcpt_fail_count: int = 0
    rcpt_defer_count: int = 0
    size_param: int = -1
    #: features' message state (registry.slot(..., scope="transaction")), by slot name
    slots: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted_recipients(self) -> list[Recipient]:
        return [r for r in self.recipients if r.accepted]

    def header_values(self, name: str) -> list[str]:
        """Return the raw values of every header with this name (case-insensitive), in order."""
        low = name.lower()
        return [v for n, v in self.headers if n.lower() == low]

    def close(self) -> None:
        self.body.close()
