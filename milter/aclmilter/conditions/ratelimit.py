# SPDX-License-Identifier: GPL-3.0-or-later
"""The `ratelimit` condition, `$sender_rate`, `$sender_rate_limit`, `$sender_rate_period`,
`settings.ratelimit_key_prefix` and the `ratelimit` store service.

`ratelimit = m / p / options / key` is true when the client's smoothed rate is >= m
(exim-acl.md §4). The rate is shared through Redis when `redis_servers` is set (so every
milter process and host sees one rate), otherwise it lives in this process.

Memoisation follows Exim's three trees: a rate computed for a key is reused without a new
update for the rest of the connection (per_conn), the message (per_mail, per_byte,
per_rcpt after RCPT) or the command (per_cmd, per_rcpt/per_addr at RCPT, readonly checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import lazy, registry, services
from ..context import EvalContext
from ..errors import ExpansionFailed, LookupDefer
from ..outcome import Result
from ..stages import ALL
from .. import validators as st

# The implementation (its dataclasses, regexes, ...) is imported when a policy uses the feature:
# `aclmilter check` of a policy without it never pays for it (issue 23, lazy.py).
if TYPE_CHECKING:  # pragma: no cover
    from ..checks import ratelimit as rl
else:
    rl = lazy.module("aclmilter.checks.ratelimit")

registry.setting("ratelimit_key_prefix", st.text, "aclmilter:ratelimit:",
                 "prefix of the Redis keys holding ratelimit records (lets several policies share a server)")


def _build_store(settings: dict, svc: services.Services) -> Any:
    """RedisStore over the shared `redis` service when Redis is configured, else a MemoryStore."""
    if not settings.get("redis_servers"):
        return rl.MemoryStore()
    # Services' lock is re-entrant, so a factory may build the service it depends on.
    return rl.RedisStore(svc.get("redis"), str(settings.get("ratelimit_key_prefix") or "aclmilter:ratelimit:"))


services.register_factory("ratelimit", _build_store)


# ---- memoisation scopes ---------------------------------------------------------------------
# Slots owned by this module (registry.slot):
#   connection "ratelimit":  {"conn": {key: rate}}                  per_conn, kept across messages
#                            {"mail": (message_count, {key: rate})} reset when a new message starts
#                            {"vars": (message_count, {name: value})} $sender_rate*, per message
#   command "ratelimit_cmd": {key: rate}                             per_cmd: one command's evaluation
# "mail" and "vars" are tagged with the message count rather than kept in a transaction slot:
# the connect and HELO ACLs run before any transaction exists.
_CONN = registry.slot("ratelimit", scope="connection", factory=dict)
_CMD = registry.slot("ratelimit_cmd", scope="command", factory=dict)


def _tagged(ctx: EvalContext, slot: str, tag: Any) -> dict:
    cache = _CONN.on(ctx.conn)
    held = cache.get(slot)
    if held is None or held[0] != tag:
        held = (tag, {})
        cache[slot] = held
    return held[1]


def _cache_for(ctx: EvalContext, scope: rl.Scope) -> dict:
    if scope is rl.Scope.CONNECTION:
        return _CONN.on(ctx.conn).setdefault("conn", {})
    if scope is rl.Scope.MESSAGE:
        return _tagged(ctx, "mail", ctx.conn.message_count)
    return _CMD.of(ctx)


def _vars(ctx: EvalContext) -> dict:
    return _tagged(ctx, "vars", ctx.conn.message_count)


def _current_vars(ctx: EvalContext) -> dict:
    held = (_CONN.peek(ctx.conn) or {}).get("vars")
    return held[1] if held is not None and held[0] == ctx.conn.message_count else {}


# ---- the condition --------------------------------------------------------------------------
def _message_size(ctx: EvalContext) -> int:
    try:
        return int(ctx.var("message_size") or -1)
    except (ValueError, ExpansionFailed):
        return -1


def _recipient(ctx: EvalContext) -> str:
    if ctx.rcpt is None:
        return "@"
    return f"{ctx.rcpt.local_part}@{ctx.rcpt.domain}"


def _parse(text: str) -> rl.RatelimitSpec:
    return rl.parse_spec(text)


@registry.condition("ratelimit", ALL, parse=_parse,
                    variables=("sender_rate", "sender_rate_limit", "sender_rate_period"))
def ratelimit(ctx: EvalContext, spec: rl.RatelimitSpec) -> Result:
    """The client's rate for this key is at or above m.

    Returns: OK when rate >= m, FAIL when below; DEFER when the shared store (Redis) cannot
    be reached ($sender_rate unset); ERROR for options that cannot be used at this stage.
    """
    values = _vars(ctx)
    values["sender_rate_limit"] = spec.limit_text
    values["sender_rate_period"] = spec.period_text
    values.pop("sender_rate", None)
    try:
        p = rl.plan(spec, ctx.stage, client_address=ctx.conn.client.address,
                    recipients_count=len(ctx.txn.accepted_recipients) if ctx.txn else 0,
                    message_size=_message_size(ctx) if ctx.txn else -1, recipient=_recipient(ctx))
    except rl.PlanError as exc:
        raise ExpansionFailed(str(exc)) from exc
    cache = _cache_for(ctx, p.scope)
    rate = cache.get(p.db_key)
    if rate is None:
        store = ctx.services.get("ratelimit")
        hashes = rl.bloom_hashes(p.unique) if p.unique is not None else None
        try:
            # a simulation without --update computes the rate this message would give, and
            # writes nothing to a shared store (Redis); the in-process store is the
            # simulation's own, so `bh` keeps rates across the transactions of its dialogue
            mode = p.update if ctx.mode.writes or not store.shared else rl.UpdateMode.READONLY
            rate = store.update(p.db_key, ctx.services.clock(), spec.period, spec.limit, p.count,
                                mode, hashes)
        except rl.StoreUnavailable as exc:
            raise LookupDefer(f"ratelimit database not available: {exc}") from exc
        cache[p.db_key] = rate
    values["sender_rate"] = f"{rate:.1f}"
    return Result.FAIL if rate < spec.limit else Result.OK


@registry.variable("sender_rate")
def _sender_rate(ctx: EvalContext) -> str | None:
    """The client's smoothed rate from the last ratelimit condition of this message (%.1f)."""
    return _current_vars(ctx).get("sender_rate")


@registry.variable("sender_rate_limit")
def _sender_rate_limit(ctx: EvalContext) -> str | None:
    """The m of the last ratelimit condition, as written."""
    return _current_vars(ctx).get("sender_rate_limit")


@registry.variable("sender_rate_period")
def _sender_rate_period(ctx: EvalContext) -> str | None:
    """The p of the last ratelimit condition, as written."""
    return _current_vars(ctx).get("sender_rate_period")
