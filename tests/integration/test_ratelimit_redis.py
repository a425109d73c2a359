# SPDX-License-Identifier: GPL-3.0-or-later
"""Ratelimit with the Redis store: same numbers as the in-process core, atomic across
processes, DEFER while Redis is down, recovery after it comes back."""

from __future__ import annotations

import multiprocessing

import pytest

import aclmilter.conditions  # noqa: F401 - registers every feature
from aclmilter import registry, state
from aclmilter.checks import ratelimit as rl
from aclmilter.clients.redis import RedisClient, parse_servers
from aclmilter.errors import LookupDefer
from aclmilter.outcome import Result
from aclmilter.services import Services
from tests.harness.redis import FakeClock, RedisServer, make_context, settings_for
from tests.unit.test_ratelimit_core import T0, reference, run_core

pytestmark = pytest.mark.integration

RUN = registry.TABLES.items["ratelimit"].run
parse = registry.TABLES.items["ratelimit"].parse


@pytest.fixture
def server(redis_module_server: RedisServer) -> RedisServer:
    redis_module_server.client().flushdb()
    return redis_module_server


def _store(server: RedisServer) -> rl.RedisStore:
    return rl.RedisStore(RedisClient(parse_servers([server.spec])))


def _run_store(store, events, period, limit, mode, uniques=None, key="k"):
    update = rl.UpdateMode(mode)
    out = []
    for n, (now, count) in enumerate(events):
        c = 0.0 if update is rl.UpdateMode.READONLY else count
        hashes = rl.bloom_hashes(uniques[n]) if uniques is not None else None
        rate = store.update(key, now, period, limit, c, update, hashes)
        out.append((rate, rate >= limit))
    return out


RETRY = [(T0 + t, 1.0) for t in (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 60, 61)]


@pytest.mark.parametrize("mode", ["leaky", "strict", "readonly"])
def test_redis_store_matches_reference_and_memory_store(server, mode):
    got = _run_store(_store(server), RETRY, 10.0, 3.0, mode, key=f"seq-{mode}")
    expected = reference(RETRY, 10.0, 3.0, mode)
    assert [t for _, t in got] == [t for _, t in expected]
    assert [r for r, _ in got] == pytest.approx([r for r, _ in expected], rel=1e-12)
    core = run_core(RETRY, 10.0, 3.0, mode)
    assert [t for _, t in got] == [t for _, t in core]
    assert [r for r, _ in got] == pytest.approx([r for r, _ in core], rel=1e-12)


def test_leaky_vs_strict_through_redis(server):
    store = _store(server)
    leaky = _run_store(store, RETRY, 10.0, 3.0, "leaky", key="leaky")
    strict = _run_store(store, RETRY, 10.0, 3.0, "strict", key="strict")
    assert [t for _, t in leaky[5:12]] == [False, True, False, True, False, True, False]
    assert all(t for _, t in strict[3:12])


def test_unique_and_count_through_redis(server):
    store = _store(server)
    uniques = ["a@x", "b@x", "a@x", "a@x", "c@x", "a@x", "a@x", "d@x", "e@x"]
    events = [(T0 + t, 1.0) for t in (0, 1, 2, 3, 4, 70, 71, 72, 72)]
    for mode in ("leaky", "strict"):
        got = _run_store(store, events, 60.0, 3.0, mode, uniques, key=f"u-{mode}")
        expected = reference(events, 60.0, 3.0, mode, uniques)
        assert [t for _, t in got] == [t for _, t in expected]
        assert [r for r, _ in got] == pytest.approx([r for r, _ in expected], rel=1e-12)
    sized = [(T0, 1500.0), (T0 + 2, 300.0), (T0 + 3, 10_000.0), (T0 + 60, 10.0)]
    got = _run_store(store, sized, 60.0, 5000.0, "leaky", key="bytes")
    assert [r for r, _ in got] == pytest.approx([r for r, _ in reference(sized, 60.0, 5000.0, "leaky")], rel=1e-12)


def test_record_layout_ttl_and_evalsha_fallback(server):
    store = _store(server)
    r = server.client()
    store.update("1h/per_mail/192.0.2.1", T0, 3600.0, 10.0, 1.0, rl.UpdateMode.LEAKY, None)
    hkey, _ = store.keys_for("1h/per_mail/192.0.2.1")
    assert hkey == "aclmilter:ratelimit:{1h/per_mail/192.0.2.1}"
    assert r.hgetall(hkey) == {"rate": "1", "time": repr(T0)}
    assert 3600 * 20 <= r.ttl(hkey) <= 3600 * 21
    r.script_flush()                          # EVALSHA now fails with NOSCRIPT -> EVAL
    rate = store.update("1h/per_mail/192.0.2.1", T0 + 1, 3600.0, 10.0, 1.0, rl.UpdateMode.LEAKY, None)
    assert rate == pytest.approx(reference([(T0, 1.0), (T0 + 1, 1.0)], 3600.0, 10.0, "leaky")[1][0], rel=1e-12)


def _hammer(spec: str, key: str, n: int, start, done) -> None:
    """Child process: n strict events on one key, all at the same scripted time."""
    store = rl.RedisStore(RedisClient(parse_servers([spec])))
    start.wait(timeout=30)
    for _ in range(n):
        store.update(key, T0, 60.0, 1e9, 1.0, rl.UpdateMode.STRICT, None)
    done.put(n)


def test_two_processes_share_one_rate_without_lost_updates(server):
    n = 300
    # One process doing all the events sequentially: the expected final rate.
    single = _store(server)
    for _ in range(2 * n):
        single.update("solo", T0, 60.0, 1e9, 1.0, rl.UpdateMode.STRICT, None)
    expected = float(server.client().hget(single.keys_for("solo")[0], "rate"))
    assert expected == pytest.approx(2 * n, rel=1e-6)
    mp = multiprocessing.get_context("spawn")
    start, done = mp.Event(), mp.Queue()
    procs = [mp.Process(target=_hammer, args=(server.spec, "shared", n, start, done)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    finished = [done.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert finished == [n, n]
    shared = float(server.client().hget(single.keys_for("shared")[0], "rate"))
    assert shared == pytest.approx(expected, rel=1e-9)


def test_condition_defers_while_redis_is_down_and_recovers(tmp_path):
    srv = RedisServer(tmp_path / "rl").start()
    clock = FakeClock()
    settings = settings_for(srv.spec)
    svc = Services(settings, clock=clock)
    spec = parse("5 / 5s / per_conn / strict")
    try:
        assert isinstance(svc.get("ratelimit"), rl.RedisStore)

        def connect() -> Result:
            ctx = make_context(settings, "connect", services=svc,
                               conn=state.Connection(client=state.ClientIdentity(address="192.0.2.50")))
            try:
                return RUN(ctx, spec)
            finally:
                clock.advance(0.5)

        assert [connect() for _ in range(4)] == [Result.FAIL] * 4
        srv.stop()
        for _ in range(3):
            with pytest.raises(LookupDefer):
                connect()
        srv.start()                    # empty again: no persistence
        assert connect() is Result.FAIL
        assert srv.client().exists("aclmilter:ratelimit:{5s/per_conn/192.0.2.50}") == 1
    finally:
        srv.stop()
        svc.close()


def test_seed_limiter_through_redis_matches_in_process(server):
    results = {}
    for name, settings in (("redis", settings_for(server.spec)), ("memory", settings_for(None))):
        clock = FakeClock()
        svc = Services(settings, clock=clock)
        out = []
        for _ in range(8):
            ctx = make_context(settings, "connect", services=svc,
                               conn=state.Connection(client=state.ClientIdentity(address="203.0.113.5")))
            out.append((RUN(ctx, parse("5 / 5s / per_conn / strict")), ctx.var("sender_rate")))
            clock.advance(0.4)
        results[name] = out
    assert results["redis"] == results["memory"]
    assert results["redis"][0] == (Result.FAIL, "1.0")
    assert results["redis"][-1][0] is Result.OK
