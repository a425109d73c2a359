# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis client: Exim's server-spec and query syntax (sans-I/O) plus a failover transport.

Sans-I/O parts (unit-tested without sockets):
- `parse_server` / `parse_servers`: Exim's `host/dbnumber/password` server specs, with
  `host:port`, `[v6]:port`, `host(socket)` and `/path/redis.sock/db/pw` forms;
- `split_query`: Exim's argument-vector split (whitespace separates, `\\` protects the next
  character), `quote`: the matching `${quote_redis:}`;
- `flatten_reply`: Exim's reply-to-text rules (arrays joined by newlines, one nested level).

Transport: `RedisClient` holds one redis-py connection pool per server and sends every
command as a RESP array, so no byte of an argument can be read as a command separator.
Servers are tried in order; a connection failure or timeout moves on to the next one; when
none answers the caller gets `RedisUnavailable`.
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from .. import lazy
from ..errors import SyntaxProblem
from .health import watched

hashlib = lazy.module("hashlib")     # a script's SHA1 is computed on first use (lazy.py)

DEFAULT_PORT = 6379
#: Exim splits a query into at most this many arguments; further text is dropped like Exim.
MAX_ARGS = 32


class RedisUnavailable(Exception):
    """No configured server could run the command now (connection refused, timeout, error reply)."""


@dataclass(frozen=True)
class ServerSpec:
    """One entry of `redis_servers`: where to connect, which database, which password."""

    host: str = ""
    port: int = DEFAULT_PORT
    unix_path: str = ""
    db: int = 0
    password: str | None = None

    def label(self) -> str:
        """A log-safe description (never includes the password)."""
        where = self.unix_path or (f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}")
        return f"{where}/{self.db}"


_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]\s/()]+))(?::(?P<port>\d{1,5}))?\Z")


def _parse_location(text: str) -> tuple[str, int, str]:
    """Return (host, port, unix_path) for the part before `/db/password`."""
    if text.startswith("/"):
        return "", DEFAULT_PORT, text
    m = re.fullmatch(r"(?P<host>[^()]*)\((?P<sock>/[^()]+)\)", text)
    if m:       # Exim's `host(/path/to/socket)` form: the socket wins
        return "", DEFAULT_PORT, m.group("sock")
    m = _HOST_PORT.match(text)
    if not m:
        raise SyntaxProblem(f"bad Redis server address {text!r} (host, host:port, [ipv6]:port or /socket/path)")
    if m.group("host") and m.group("host").isdigit():
        # Typically "host:port/db/" written in an Exim colon list, which splits at the ":".
        raise SyntaxProblem(f"Redis server host {text!r} looks like a port: in a colon list write "
                            "host::port (Exim list rules) or give redis_servers as a YAML list")
    port = int(m.group("port") or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise SyntaxProblem(f"Redis port {port} is out of range")
    return (m.group("v6") or m.group("host")), port, ""


def parse_server(text: str) -> ServerSpec:
    """Parse `host/dbnumber/password` (Exim) into a ServerSpec; raises SyntaxProblem.

    As in Exim the database and the password are the last two `/` fields (either may be
    empty), so a unix socket path may itself contain slashes. A bare `host[:port]` (no
    slash at all) is accepted as database 0 without a password.
    """
    text = text.strip()
    if not text:
        raise SyntaxProblem("empty Redis server entry")
    if any(c in text for c in "\r\n\0"):
        raise SyntaxProblem("line breaks are not allowed in a Redis server entry")
    if "/" not in text:
        location, db_text, password = text, "", ""
    else:
        parts = text.rsplit("/", 2)
        if len(parts) != 3 or not parts[0]:
            raise SyntaxProblem(f"Redis server {text!r}: expected host/dbnumber/password")
        location, db_text, password = parts
    host, port, unix_path = _parse_location(location)
    if db_text and not db_text.isdigit():
        raise SyntaxProblem(f"Redis database number {db_text!r} is not a number")
    return ServerSpec(host, port, unix_path, int(db_text or 0), password or None)


def _exim_colon_list(text: str) -> list[str]:
    """Split an Exim list: `:` separates, `::` is a literal colon, `<c` changes the separator."""
    text = text.strip()
    sep = ":"
    if len(text) >= 2 and text[0] == "<" and not text[1].isalnum() and not text[1].isspace():
        sep, text = text[1], text[2:]
    items: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == sep:
            if i + 1 < len(text) and text[i + 1] == sep:
                current.append(sep)
                i += 2
                continue
            items.append("".join(current).strip())
            current = []
        else:
            current.append(c)
        i += 1
    items.append("".join(current).strip())
    return [x for x in items if x]


def parse_servers(value: Any) -> tuple[ServerSpec, ...]:
    """Validate `settings.redis_servers`: a YAML list of specs, or one Exim colon-list string.

    In the colon-list form `::` stands for one colon (Exim list rules), so
    `[::1]:6380//` is written `[::::1]::6380//`, or use `<;` to change the separator.
    Returns the specs in failover order; an empty value means "no Redis configured".
    """
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):
        entries = _exim_colon_list(value)
    elif isinstance(value, list) and all(isinstance(x, str) for x in value):
        entries = list(value)
    else:
        raise SyntaxProblem("redis_servers: a list of host/dbnumber/password strings is expected")
    return tuple(parse_server(e) for e in entries)


def split_query(query: str) -> list[str]:
    """Split a query into Redis arguments the way Exim does.

    Whitespace separates arguments; a backslash makes the next character (whitespace or a
    backslash) part of the argument; a trailing lone backslash is dropped. At most
    MAX_ARGS arguments are returned (Exim ignores the rest).
    """
    args: list[str] = []
    i, n = 0, len(query)
    while i < n and len(args) < MAX_ARGS:
        while i < n and query[i].isspace():
            i += 1
        if i >= n:
            break
        buf: list[str] = []
        while i < n and not query[i].isspace():
            if query[i] == "\\":
                i += 1
                if i < n:
                    buf.append(query[i])
            else:
                buf.append(query[i])
            i += 1
        args.append("".join(buf))
    return args


def quote(text: str) -> str:
    """`${quote_redis:}`: put a backslash before every whitespace character and backslash.

    The result always splits back into exactly one argument equal to `text`.
    """
    return "".join("\\" + c if c.isspace() or c == "\\" else c for c in text)


def _scalar_text(item: Any) -> str | None:
    """Text of one array element; None for elements Exim ignores (nil, deeper arrays)."""
    if isinstance(item, bytes):
        return item.decode("utf-8", "surrogateescape")
    if isinstance(item, bool):
        return "1" if item else "0"
    if isinstance(item, (int, float, str)):
        return str(item)
    return None


def flatten_reply(reply: Any) -> str | None:
    """Turn a RESP2 reply into lookup text; None means "not found".

    nil -> None; integer -> its decimal text; bulk/status string -> the string; array ->
    elements joined by newlines, a nested array contributing its own elements (one level,
    deeper nesting and nil elements are skipped as Exim does); an empty array -> None
    (Exim builds no result text and the lookup fails).
    """
    if reply is None:
        return None
    if isinstance(reply, (list, tuple)):
        lines: list[str] = []
        for entry in reply:
            if isinstance(entry, (list, tuple)):
                lines.extend(t for t in (_scalar_text(x) for x in entry) if t is not None)
            else:
                t = _scalar_text(entry)
                if t is not None:
                    lines.append(t)
        return "\n".join(lines) if lines else None
    return _scalar_text(reply)


@dataclass(frozen=True)
class Script:
    """A Lua script sent with EVALSHA (EVAL when the server does not know it yet)."""

    source: str

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


#: redis-py >= 5 speaks RESP3 when asked and takes `protocol`; 4.3 (Debian bookworm) speaks
#: only RESP2 and refuses the keyword. Replies must be RESP2's either way.
@functools.cache
def _resp2() -> dict[str, Any]:
    return {"protocol": 2} if "protocol" in inspect.signature(redis_py.Redis.__init__).parameters else {}


# redis-py loads when the first connection is made, not by `aclmilter check` (lazy.py)
if TYPE_CHECKING:     # the real module for the type checker; at run time it loads on first use
    import redis as redis_py
else:
    redis_py = lazy.module("redis")


def to_wire(value: Any) -> Any:
    """A command argument as Redis gets it: text as its original bytes, numbers unchanged.

    Envelope text reaches us decoded with surrogateescape (8-bit bytes that are not UTF-8 are
    lone surrogates); redis-py's own encoder refuses those, so text is encoded here with the
    same error handler and the key Redis stores is exactly the bytes the client sent.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return value


class RedisClient:
    """Thread-safe failover client over one redis-py connection pool per server.

    Every call goes to the first server that answers; redis-py reconnects a dropped
    connection on the next call, so a restarted server is used again without action.
    """

    def __init__(self, servers: Sequence[ServerSpec], timeout: float = 2.0) -> None:
        if not servers:
            raise ValueError("RedisClient needs at least one server")
        self.servers = tuple(servers)
        self.timeout = timeout
        self._clients = [self._build(s) for s in self.servers]
        self.metrics: Any = lambda: None     # the daemon's Metrics, looked up per call (set late)

    def _build(self, spec: ServerSpec) -> redis_py.Redis:
        common: dict[str, Any] = dict(
            db=spec.db, password=spec.password, socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout, **_resp2(),
            # No automatic retries: a retried write (INCR, the ratelimit script) after a
            # timeout could be applied twice. The pool reconnects on the next call anyway.
            retry=redis_py.retry.Retry(redis_py.backoff.NoBackoff(), 0), health_check_interval=0,
        )
        if spec.unix_path:
            client = redis_py.Redis(unix_socket_path=spec.unix_path, **common)
        else:
            client = redis_py.Redis(host=spec.host, port=spec.port, **common)
        # Raw replies, as Exim sees them: "OK" stays "OK", arrays stay arrays.
        client.response_callbacks.clear()
        return client

    def execute(self, argv: Sequence[str | bytes | int | float]) -> Any:
        """Run one command (an argument vector) on the first server that answers.

        Returns: the raw RESP2 reply (bytes, int, None or list).
        Raises RedisUnavailable when every server failed or the server replied with an error.
        """
        if not argv:
            raise ValueError("empty Redis command")
        wire = [to_wire(a) for a in argv]
        with watched(self.metrics(), "redis", (RedisUnavailable,)):
            return self._each_server(lambda c: c.execute_command(*wire))

    def run_script(self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int | float]) -> Any:
        """Run a Lua script atomically: EVALSHA, falling back to EVAL when it is not cached.

        Returns: the script's raw reply. Raises RedisUnavailable like `execute`.
        """
        wire = [to_wire(a) for a in (*keys, *args)]

        def call(c: redis_py.Redis) -> Any:
            try:
                return c.execute_command("EVALSHA", script.sha1, len(keys), *wire)
            except redis_py.exceptions.NoScriptError:
                return c.execute_command("EVAL", script.source, len(keys), *wire)
        with watched(self.metrics(), "redis", (RedisUnavailable,)):
            return self._each_server(call)

    def _each_server(self, call: Any) -> Any:
        errors: list[str] = []
        for spec, client in zip(self.servers, self._clients, strict=True):
            try:
                return call(client)
            except (redis_py.exceptions.ConnectionError, redis_py.exceptions.TimeoutError, OSError) as exc:
                errors.append(f"{spec.label()}: {exc}")
                continue   # next server in the failover order
            except redis_py.exceptions.ResponseError as exc:
                # An error reply (WRONGTYPE, auth, script error) is an answer: do not fail over.
                raise RedisUnavailable(f"{spec.label()}: error reply: {exc}") from exc
            except redis_py.exceptions.RedisError as exc:
                errors.append(f"{spec.label()}: {exc}")
        raise RedisUnavailable("no Redis server answered: " + "; ".join(errors))

    def close(self) -> None:
        """Close every pooled connection (on reload and shutdown)."""
        for client in self._clients:
            try:
                client.close()
                client.connection_pool.disconnect()
            except Exception:  # noqa: BLE001 - closing must never fail a reload
                pass
