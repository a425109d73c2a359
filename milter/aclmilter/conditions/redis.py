# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis registry entries: `settings.redis_servers`, `settings.redis_timeout`, the `redis`
query-style lookup (`${lookup redis{GET key}}`), `${quote_redis:}` and the `redis` service.

Security model (DESIGN.md rule 8): the query is split into an argument vector after
expansion and sent as one RESP array, so network data can never add a command or smuggle
CR/LF framing. Network data inside the query can still split into extra *arguments* unless
the policy wraps it in `${quote_redis:...}` — exactly as in Exim. What it can never do is
choose the command: the command word must be one of `ALLOWED_COMMANDS` (plain data
commands) and any other command is refused with an expansion error (ERROR, 451).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import lazy, registry, services
from ..errors import ExpansionFailed, LookupDefer
from .. import validators as st

# The implementation (its dataclasses, regexes, ...) is imported when a policy uses the feature:
# `aclmilter check` of a policy without it never pays for it (issue 23, lazy.py).
if TYPE_CHECKING:  # pragma: no cover
    from ..clients import redis as rc
else:
    rc = lazy.module("aclmilter.clients.redis")

#: Data commands a policy may use in `${lookup redis{...}}`. Administrative and scripting
#: commands (CONFIG, FLUSHALL, EVAL, MULTI, KEYS, DEL, ...) are refused: they are never
#: needed to look a value up or record a fact, and refusing them means that even a policy
#: which (wrongly) lets network data reach the command position cannot do damage with them.
READ_COMMANDS = frozenset("""
    GET MGET GETRANGE STRLEN EXISTS TTL PTTL TYPE
    SMEMBERS SISMEMBER SMISMEMBER SCARD SRANDMEMBER
    HGET HMGET HGETALL HEXISTS HKEYS HVALS HLEN HSTRLEN
    LRANGE LINDEX LLEN LPOS
    ZSCORE ZMSCORE ZRANK ZREVRANK ZRANGE ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE ZCARD ZCOUNT
    PFCOUNT PING
""".split())
WRITE_COMMANDS = frozenset("""
    SET SETEX PSETEX SETNX GETSET GETEX APPEND INCR INCRBY INCRBYFLOAT DECR DECRBY
    EXPIRE PEXPIRE
    SADD SREM HSET HSETNX HINCRBY HINCRBYFLOAT HDEL
    LPUSH RPUSH LTRIM ZADD ZINCRBY ZREM PFADD
    XADD
""".split())
ALLOWED_COMMANDS = READ_COMMANDS | WRITE_COMMANDS


def _timeout(value: Any) -> float:
    t = st.number(0.001, 300)(value)
    return float(t)


def _servers(value: Any) -> Any:
    return rc.parse_servers(value)


registry.setting("redis_servers", _servers, (),
                 "Redis servers in failover order, Exim syntax host/dbnumber/password "
                 "(host:port, [ipv6]:port, /path/redis.sock/db/pw); a YAML list or a colon list")
registry.setting("redis_timeout", _timeout, 2.0,
                 "seconds a Redis connect or command may take before the lookup defers")


def _build_client(settings: dict, svc: services.Services) -> rc.RedisClient | None:
    """The shared Redis client, or None when `redis_servers` is empty."""
    servers = settings.get("redis_servers") or ()
    if not servers:
        return None
    client = rc.RedisClient(servers, float(settings.get("redis_timeout") or 2.0))
    client.metrics = lambda: svc.metrics       # set by the daemon after the services are built
    return client


services.register_factory("redis", _build_client)


def command_argv(query: str) -> list[str]:
    """Split an expanded query into an argument vector and vet its command word.

    Returns: the argument vector. Raises ExpansionFailed (-> ERROR) for an empty query or a
    command outside ALLOWED_COMMANDS.
    """
    argv = rc.split_query(query)
    if not argv:
        raise ExpansionFailed("redis lookup: empty query")
    word = argv[0]
    if word.upper() not in ALLOWED_COMMANDS:
        shown = word[:40].encode("unicode_escape").decode("ascii")
        raise ExpansionFailed(f"redis lookup: command {shown!r} is not allowed")
    return argv


def static_command_word(unexpanded_query: str) -> str | None:
    """The command word of an unexpanded query if it is literal policy text, else None.

    For load-time validation: a query whose first word contains `$`, `\\` or `{` could take
    its command from data and should be refused when the policy is loaded.
    """
    argv = unexpanded_query.split(None, 1)
    if not argv or any(c in argv[0] for c in "$\\{}"):
        return None
    return argv[0]


def disallowed_commands(expansion: Any) -> list[str]:
    """Load-time check of every `${lookup redis{...}}` in an expansion (the parser already
    makes the command word literal text): the words outside ALLOWED_COMMANDS, so a policy
    learns at load, not from a live message, that its command will be refused."""
    from ..expand import ast
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, ast.Lookup) and node.type_name.rstrip("*@") == "redis":
            first = node.source.parts[0] if node.source.parts else None
            words = first.text.split(None, 1) if isinstance(first, ast.Literal) else []
            if words and words[0].upper() not in ALLOWED_COMMANDS:
                found.append(words[0])
        if isinstance(node, (list, tuple)):
            for n in node:
                walk(n)
        elif hasattr(node, "__dataclass_fields__"):
            for name in node.__dataclass_fields__:
                walk(getattr(node, name))

    walk(expansion.root)
    return found


def _quote(text: str) -> str:
    return rc.quote(text)


@registry.lookup("redis", query_style=True, quote=_quote)
def find(ctx: Any, _key: str | None, query: str) -> str | None:
    """Run an (expanded) Redis query.

    Returns: the reply as text (arrays one item per line), or None for nil / empty array.
    Raises LookupDefer when no Redis server is configured or none answers, or when the
    server replies with an error; ExpansionFailed for a refused command.
    """
    argv = command_argv(query)
    client = ctx.services.get("redis")
    if client is None:
        raise LookupDefer("redis lookup: no redis_servers configured")
    if not ctx.mode.writes and argv[0].upper() in WRITE_COMMANDS:
        # a simulation without --update: the write is shown, not sent ("not found")
        ctx.note("redis", f"{argv[0].upper()} not sent: simulation without --update", "skipped")
        return None
    try:
        reply = client.execute(argv)
    except rc.RedisUnavailable as exc:
        raise LookupDefer(f"redis lookup: {exc}") from exc
    return rc.flatten_reply(reply)
