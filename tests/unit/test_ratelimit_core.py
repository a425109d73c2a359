# SPDX-License-Identifier: GPL-3.0-or-later
"""The sans-I/O ratelimit core against an independent reference of exim-acl.md §4."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from aclmilter.checks import ratelimit as rl
from aclmilter.errors import SyntaxProblem
from aclmilter.stages import Stage


# ---- the reference: exim-acl.md §4 transcribed as directly as possible --------------------
def reference(events: list[tuple[float, float]], period: float, limit: float, mode: str,
              seen_once: list[str] | None = None) -> list[tuple[float, bool]]:
    """(rate, condition true) per event. events = (time, count); `seen_once` = unique values."""
    stored: tuple[float, float] | None = None          # (rate, timestamp)
    seen: set[str] = set()
    epoch: float | None = None
    out = []
    for n, (now, count) in enumerate(events):
        if mode == "readonly":
            count = 0.0
        pending_seen = set(seen)
        new_epoch = epoch
        if seen_once is not None and mode != "readonly":
            if stored is None or epoch is None or math.floor(now) > epoch + period:
                pending_seen, new_epoch = set(), math.floor(now)
            if seen_once[n] in pending_seen:
                count = 0.0
            pending_seen.add(seen_once[n])
        if stored is None:
            rate = count
        else:
            i = now - stored[1]
            if i <= 0:
                i = 1e-9
            a = math.exp(-i / period)
            rate = (1 - a) * count / (i / period) + a * stored[0]
            if rate < count:
                rate = count
        true = not rate < limit
        if (mode == "leaky" and not true) or mode == "strict":
            stored = (rate, now)
            seen, epoch = pending_seen, new_epoch
        out.append((rate, true))
    return out


def run_core(events, period, limit, mode, uniques=None):
    update = rl.UpdateMode(mode)
    record = None
    out = []
    for n, (now, count) in enumerate(events):
        c = 0.0 if update is rl.UpdateMode.READONLY else count
        hashes = rl.bloom_hashes(uniques[n]) if uniques is not None else None
        step = rl.advance(record, now, period, limit, c, update, hashes)
        if step.write is not None:
            record = step.write
        out.append((step.rate, step.rate >= limit))
    return out


T0 = 1_700_000_000.0
BURST = [(T0 + t, 1.0) for t in (0, 1, 2, 3, 4, 4.5, 30, 31, 200)]


def test_hand_computed_values_period_10s():
    # Worked by hand from the formula: a = e^-0.1 = 0.904837, (1-a)/0.1 = 0.951626.
    got = run_core(BURST[:5], 10.0, 3.0, "leaky")
    assert [r for r, _ in got] == pytest.approx([1.0, 1.85646, 2.63142, 3.33263, 3.06077], abs=2e-5)
    assert [t for _, t in got] == [False, False, False, True, True]
    strict = run_core(BURST[:5], 10.0, 3.0, "strict")
    assert strict[4][0] == pytest.approx(3.96712, abs=2e-5)


@pytest.mark.parametrize("mode", ["leaky", "strict", "readonly"])
@pytest.mark.parametrize("limit", [0.0, 1.0, 3.0, 5.5])
def test_matches_reference(mode, limit):
    expected = reference(BURST, 10.0, limit, mode)
    got = run_core(BURST, 10.0, limit, mode)
    for (er, et), (gr, gt) in zip(expected, got, strict=True):
        assert gr == pytest.approx(er, rel=1e-12)
        assert gt == et


def test_leaky_and_strict_differ_for_a_client_that_keeps_retrying():
    # A burst, then one attempt every 2 s (= 5 per 10 s period, limit 3 per period).
    events = [(T0 + t, 1.0) for t in (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16)]
    leaky = run_core(events, 10.0, 3.0, "leaky")
    strict = run_core(events, 10.0, 3.0, "strict")
    assert leaky[:4] == strict[:4]                       # identical until the first refusal
    # leaky: refused attempts leave no trace, so some retries get through (rate stays ~3)
    assert [t for _, t in leaky[5:]] == [False, True, False, True, False, True, False]
    # strict: every attempt is recorded, so a client retrying above the limit stays blocked
    assert all(t for _, t in strict[3:])
    assert strict[-1][0] > 5.0 > 3.0 > leaky[-1][0]


def test_limit_zero_blocks_everyone_and_readonly_counts_nothing():
    assert all(t for _, t in run_core(BURST, 10.0, 0.0, "leaky"))
    ro = run_core(BURST, 10.0, 1.0, "readonly")
    assert all(r == 0.0 for r, _ in ro)


def test_clock_going_backwards_does_not_produce_nan():
    got = run_core([(T0, 1.0), (T0 - 5, 1.0), (T0 - 5, 1.0)], 10.0, 100.0, "leaky")
    assert all(not math.isnan(r) for r, _ in got)
    assert got == [(r, t) for r, t in reference([(T0, 1.0), (T0 - 5, 1.0), (T0 - 5, 1.0)], 10.0, 100.0, "leaky")]


def test_count_and_per_byte_sized_events():
    events = [(T0, 1500.0), (T0 + 2, 300.0), (T0 + 3, 10_000.0), (T0 + 60, 10.0)]
    for mode in ("leaky", "strict"):
        expected = reference(events, 60.0, 5000.0, mode)
        got = run_core(events, 60.0, 5000.0, mode)
        assert [pytest.approx(r, rel=1e-12) for r, _ in expected] == [r for r, _ in got]
        assert [t for _, t in expected] == [t for _, t in got]


def test_unique_values_counted_once_per_period():
    uniques = ["a@x", "b@x", "a@x", "a@x", "c@x", "a@x", "a@x"]
    events = [(T0 + t, 1.0) for t in (0, 1, 2, 3, 4, 70, 71)]
    for mode in ("leaky", "strict"):
        expected = reference(events, 60.0, 10.0, mode, uniques)
        got = run_core(events, 60.0, 10.0, mode, uniques)
        assert [r for r, _ in got] == pytest.approx([r for r, _ in expected], rel=1e-12)
    got = run_core(events, 60.0, 10.0, "leaky", uniques)
    # repeats of a@x inside the first minute add nothing: the rate only decays
    assert got[2][0] < got[1][0] and got[3][0] < got[2][0]
    # after the period the filter is discarded: a@x counts again
    assert got[5][0] > 1.0 - 1e-9


def test_leaky_over_limit_does_not_record_the_unique_value():
    uniques = ["a", "b", "c", "c"]
    events = [(T0, 1.0), (T0, 1.0), (T0, 1.0), (T0 + 1, 1.0)]
    expected = reference(events, 60.0, 2.0, "leaky", uniques)
    got = run_core(events, 60.0, 2.0, "leaky", uniques)
    assert [t for _, t in got] == [t for _, t in expected] == [False, True, True, False]
    # "c" was over the limit the first time, so it was not remembered: it counts again
    # (had it been remembered the rate would only have decayed, to e^(-1/60) = 0.98)
    assert got[3][0] == pytest.approx(expected[3][0], rel=1e-12)
    assert got[3][0] > 1.9


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.tuples(hs.floats(0, 500), hs.floats(0, 50)), min_size=1, max_size=30),
       hs.sampled_from(["leaky", "strict", "readonly"]), hs.floats(0, 40), hs.sampled_from([1.0, 5.0, 3600.0]))
def test_property_matches_reference(steps, mode, limit, period):
    now, events = T0, []
    for delta, count in steps:
        now += delta
        events.append((now, count))
    expected = reference(events, period, limit, mode)
    got = run_core(events, period, limit, mode)
    assert [t for _, t in got] == [t for _, t in expected]
    assert [r for r, _ in got] == pytest.approx([r for r, _ in expected], rel=1e-9)


# ---- syntax ---------------------------------------------------------------------------------
def test_parse_full_spec():
    spec = rl.parse_spec(" 1.5K / 1h30m / per_rcpt / strict / count=2 / unique=$x / my/key ")
    assert spec.limit == 1536.0 and spec.limit_text == "1.5K"
    assert spec.period == 5400.0 and spec.period_text == "1h30m"
    assert spec.update is rl.UpdateMode.STRICT
    assert spec.options == (("per_rcpt", ""), ("count", "2"), ("unique", "$x"))
    assert spec.key == "my/key"


def test_parse_seed_example_and_separator_change():
    spec = rl.parse_spec("5 / 5s / per_conn / strict")
    assert (spec.limit, spec.period, spec.key, spec.update) == (5.0, 5.0, None, rl.UpdateMode.STRICT)
    spec = rl.parse_spec("<, 10, 1d, per_mail, a/b")
    assert spec.period == 86400.0 and spec.key == "a/b"


@pytest.mark.parametrize("text, message", [
    ("10", "expected m / p"),
    ("abc / 1h", "not a positive number"),
    ("-1 / 1h", "not a positive number"),
    ("10 / 60", "not a time value"),
    ("10 / 0s", "not a time value"),
    ("10 / 1x", "not a time value"),
    ("10 / 1h / per_mail / per_rcpt", "conflicting per_* options"),
    ("10 / 1h / per_byte / per_mail", "conflicting per_* options"),
    ("10 / 1h / leaky / strict", "conflicting update modes"),
    ("10 / 1h / count=-3", "not a positive number"),
    ("10 / 1h / count=x", "not a positive number"),
])
def test_syntax_errors(text, message):
    with pytest.raises(SyntaxProblem, match=message.replace("*", r"\*")):
        rl.parse_spec(text)


def test_syntax_error_offsets_point_at_the_item():
    with pytest.raises(SyntaxProblem) as info:
        rl.parse_spec("10 / 1h / per_mail / per_rcpt")
    assert info.value.offset == len("10 / 1h / per_mail / ")


# ---- per-stage rules ------------------------------------------------------------------------
def _plan(text, stage, **kw):
    args = dict(client_address="192.0.2.1", recipients_count=3, message_size=4096, recipient="u@example.com")
    args.update(kw)
    return rl.plan(rl.parse_spec(text), stage, **args)


def test_key_includes_literal_period_mode_and_unique():
    assert _plan("10 / 1h", Stage.MAIL).db_key == "1h/per_mail/192.0.2.1"
    assert _plan("10 / 60m", Stage.MAIL).db_key == "60m/per_mail/192.0.2.1"
    assert _plan("99 / 1h / strict", Stage.MAIL).db_key == "1h/per_mail/192.0.2.1"
    assert _plan("10 / 1h / per_byte", Stage.DATA).db_key == "1h/per_mail/192.0.2.1"
    assert _plan("10 / 1h / unique=x / k", Stage.MAIL).db_key == "1h/per_mail/unique/k"
    assert _plan("10 / 1h / per_addr", Stage.RCPT).db_key == "1h/per_rcpt/unique/192.0.2.1"
    assert _plan("10 / 1h", Stage.MAIL, client_address="").db_key == "1h/per_mail/"


def test_counts_by_stage():
    assert _plan("10 / 1h / per_byte", Stage.MAIL, message_size=-1).count == 0.0
    assert _plan("10 / 1h / per_byte", Stage.DATA).count == 4096.0
    assert _plan("10 / 1h / per_rcpt", Stage.RCPT).count == 1.0
    assert _plan("10 / 1h / per_rcpt", Stage.PREDATA).count == 3.0
    assert _plan("10 / 1h / per_rcpt / count=5", Stage.PREDATA).count == 5.0
    assert _plan("10 / 1h / count=5 / per_rcpt", Stage.PREDATA).count == 3.0   # order matters
    assert _plan("10 / 1h / per_addr", Stage.RCPT).unique == "u@example.com"


def test_forced_readonly_and_its_error():
    p = _plan("10 / 1h / per_mail", Stage.CONNECT)
    assert p.update is rl.UpdateMode.READONLY and p.count == 0.0 and p.scope is rl.Scope.COMMAND
    assert _plan("10 / 1h / per_rcpt", Stage.MAIL).update is rl.UpdateMode.READONLY
    assert _plan("10 / 1h / per_addr", Stage.DATA).unique == "*"
    with pytest.raises(rl.PlanError):
        _plan("10 / 1h / per_mail / strict", Stage.HELO)
    assert _plan("10 / 1h / per_mail / strict / noupdate", Stage.HELO).update is rl.UpdateMode.READONLY
    assert _plan("10 / 1h / per_conn / strict", Stage.CONNECT).update is rl.UpdateMode.STRICT


def test_scopes():
    assert _plan("1 / 1s / per_conn", Stage.CONNECT).scope is rl.Scope.CONNECTION
    assert _plan("1 / 1s", Stage.MAIL).scope is rl.Scope.MESSAGE
    assert _plan("1 / 1s / per_rcpt", Stage.RCPT).scope is rl.Scope.COMMAND
    assert _plan("1 / 1s / per_rcpt", Stage.DATA).scope is rl.Scope.MESSAGE
    assert _plan("1 / 1s / per_cmd", Stage.MAIL).scope is rl.Scope.COMMAND
    assert _plan("1 / 1s / per_conn / readonly", Stage.MAIL).scope is rl.Scope.COMMAND


def test_bloom_geometry():
    assert rl.bloom_size(3) == 40 and rl.bloom_size(100) == 200
    h = rl.bloom_hashes("user@example.com")
    assert len(h) == 8 and h[1] - h[0] == h[2] - h[1]
