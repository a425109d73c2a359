# SPDX-License-Identifier: GPL-3.0-or-later
"""The `ratelimit` condition with the in-process store: results, variables, memoisation scopes."""

from __future__ import annotations

import math

import pytest

import aclmilter.conditions  # noqa: F401 - registers every feature
from aclmilter import registry, state
from aclmilter.checks import ratelimit as rl
from aclmilter.errors import ExpansionFailed, LookupDefer
from aclmilter.outcome import Result
from aclmilter.services import Services
from aclmilter.stages import Stage
from tests.harness.redis import FakeClock, make_context, settings_for

RUN = registry.TABLES.items["ratelimit"].run
parse = registry.TABLES.items["ratelimit"].parse


class CountingStore(rl.MemoryStore):
    """The real in-process store, counting how often the database is consulted."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def update(self, *args, **kwargs):
        self.calls += 1
        return super().update(*args, **kwargs)


class DeadStore:
    def update(self, *args, **kwargs):
        raise rl.StoreUnavailable("connection refused")


def _services(clock: FakeClock, store: object | None = None) -> Services:
    overrides = {"ratelimit": store} if store is not None else None
    return Services(settings_for(None), overrides=overrides, clock=clock)


def _new_connection(svc: Services, address: str = "192.0.2.7"):
    return state.Connection(client=state.ClientIdentity(address=address, port="1234"))


def test_store_without_redis_is_in_process():
    svc = Services(settings_for(None), clock=FakeClock())
    assert isinstance(svc.get("ratelimit"), rl.MemoryStore)


def test_seed_connection_limiter_counts_connections_per_ip():
    clock = FakeClock()
    svc = _services(clock)
    spec = parse("5 / 5s / per_conn / strict")
    results = []
    for _ in range(7):                       # one new connection every 0.5 s from one IP
        ctx = make_context(svc.settings, "connect", services=svc, conn=_new_connection(svc))
        results.append(RUN(ctx, spec))
        clock.advance(0.5)
    # Reference: strict, a = e^(-0.1); the 5th connection in 2 s reaches the limit.
    rate, expect = None, []
    for _ in range(7):
        rate = 1.0 if rate is None else max(1.0, (1 - math.exp(-0.1)) / 0.1 + math.exp(-0.1) * rate)
        expect.append(Result.OK if rate >= 5 else Result.FAIL)
    assert results == expect
    assert results[:4] == [Result.FAIL] * 4 and results[-1] is Result.OK
    other = make_context(svc.settings, "connect", services=svc, conn=_new_connection(svc, "198.51.100.9"))
    assert RUN(other, spec) is Result.FAIL   # another client has its own rate


def test_variables_are_set_and_reset_at_a_new_message():
    clock = FakeClock()
    svc = _services(clock)
    conn = _new_connection(svc)
    ctx = make_context(svc.settings, "mail", services=svc, conn=conn, txn=state.Transaction(sender="a@b"))
    conn.message_count = 1
    assert ctx.var("sender_rate") == ""
    RUN(ctx, parse("0.5K / 1h / count=2"))
    assert (ctx.var("sender_rate"), ctx.var("sender_rate_limit"), ctx.var("sender_rate_period")) == ("2.0", "0.5K", "1h")
    conn.message_count = 2                   # the session counts MAIL commands
    ctx2 = make_context(svc.settings, "mail", services=svc, conn=conn, txn=state.Transaction(sender="a@b"))
    assert ctx2.var("sender_rate") == "" and ctx2.var("sender_rate_limit") == ""


def test_per_conn_rate_is_memoised_for_the_connection():
    clock = FakeClock()
    store = CountingStore()
    svc = _services(clock, store)
    conn = _new_connection(svc)
    spec = parse("2 / 1m / per_conn")
    for msg in range(3):
        conn.message_count = msg
        ctx = make_context(svc.settings, "mail", services=svc, conn=conn, txn=state.Transaction())
        assert RUN(ctx, spec) is Result.FAIL
        # m is not part of the key: "1 / 1m" reuses the cached rate 1.0, at the limit -> true
        assert RUN(ctx, parse("1 / 1m / per_conn")) is Result.OK
        clock.advance(1)
    ctx = make_context(svc.settings, "rcpt", services=svc, conn=conn, txn=state.Transaction())
    assert RUN(ctx, parse("1 / 1m / per_conn")) is Result.OK
    assert store.calls == 1


def test_per_mail_memoised_per_message_and_per_rcpt_per_command():
    clock = FakeClock()
    store = CountingStore()
    svc = _services(clock, store)
    conn = _new_connection(svc)
    conn.message_count = 1
    txn = state.Transaction(sender="s@example.org")
    for n in range(3):
        r = state.Recipient(f"u{n}@example.com")
        txn.recipients.append(r)
        ctx = make_context(svc.settings, "rcpt", services=svc, conn=conn, txn=txn, rcpt=r)
        RUN(ctx, parse("100 / 1h / per_mail"))
        RUN(ctx, parse("100 / 1h / per_mail"))
        RUN(ctx, parse("100 / 1h / per_rcpt"))
        RUN(ctx, parse("100 / 1h / per_rcpt"))         # same command: cached
        assert ctx.var("sender_rate") == f"{n + 1:.1f}"
    # per_mail: once for the message; per_rcpt: once per RCPT command
    assert store.calls == 1 + 3
    conn.message_count = 2
    ctx = make_context(svc.settings, "mail", services=svc, conn=conn, txn=state.Transaction())
    RUN(ctx, parse("100 / 1h / per_mail"))
    assert store.calls == 5


def test_per_rcpt_after_data_counts_all_recipients_and_per_byte_counts_size():
    clock = FakeClock()
    store = CountingStore()
    svc = _services(clock, store)
    conn = _new_connection(svc)
    txn = state.Transaction(sender="s@example.org", size_param=2000)
    txn.recipients = [state.Recipient(f"u{n}@example.com") for n in range(4)]
    ctx = make_context(svc.settings, "predata", services=svc, conn=conn, txn=txn)
    RUN(ctx, parse("100 / 1h / per_rcpt"))
    assert ctx.var("sender_rate") == "4.0"
    mail_ctx = make_context(svc.settings, "mail", services=svc, conn=conn, txn=txn)
    RUN(mail_ctx, parse("1M / 1h / per_byte / k1"))
    assert mail_ctx.var("sender_rate") == "2000.0"     # the SIZE= parameter before data
    conn.message_count += 1
    txn.body.write(b"x" * 1000)
    txn.headers = [("Subject", "hi")]
    data_ctx = make_context(svc.settings, "data", services=svc, conn=conn, txn=txn)
    RUN(data_ctx, parse("1M / 1h / per_byte / k2"))
    assert data_ctx.var("sender_rate") == data_ctx.var("message_size") + ".0"
    assert int(data_ctx.var("message_size")) > 1000


def test_stage_rules_error_and_forced_readonly():
    clock = FakeClock()
    svc = _services(clock)
    ctx = make_context(svc.settings, "connect", services=svc)
    with pytest.raises(ExpansionFailed, match="must not have /leaky or /strict"):
        RUN(ctx, parse("10 / 1h / per_mail / strict"))
    assert RUN(ctx, parse("0 / 1h / per_mail")) is Result.OK      # readonly, rate 0 >= 0
    assert ctx.var("sender_rate") == "0.0"


def test_unreachable_store_defers_and_leaves_sender_rate_unset():
    svc = _services(FakeClock(), DeadStore())
    ctx = make_context(svc.settings, "connect", services=svc)
    with pytest.raises(LookupDefer):
        RUN(ctx, parse("10 / 1h / per_conn"))
    assert ctx.var("sender_rate") == "" and ctx.var("sender_rate_limit") == "10"


def test_condition_is_registered_for_every_stage_with_expanded_argument():
    entry = registry.TABLES.items["ratelimit"]
    assert entry.stages == Stage.CONNECT | Stage.HELO | Stage.MAIL | Stage.RCPT | Stage.PREDATA | Stage.DATA | Stage.DELIVER
    assert entry.arg is registry.ArgMode.EXPANDED
    assert isinstance(entry.parse("1 / 1s"), rl.RatelimitSpec)
