# SPDX-License-Identifier: GPL-3.0-or-later
"""DNS client pieces without a network: settings, names, the TTL cache, negative TTLs."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from aclmilter.clients.dns import (DnsAnswer, DnsSettings, Nameserver, Status, parse_dns_settings,
                                   parse_nameserver)
from aclmilter.clients.dns_cache import TtlCache
from aclmilter.clients.dns_names import BadName, to_alabel, to_name
from aclmilter.errors import SyntaxProblem


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:5353", Nameserver("127.0.0.1", 5353)),
    ("127.0.0.1", Nameserver("127.0.0.1", 53)),
    ("[::1]:5353", Nameserver("::1", 5353)),
    ("[::1]", Nameserver("::1", 53)),
    ("::1", Nameserver("::1", 53)),
    ("2001:db8::53", Nameserver("2001:db8::53", 53)),
])
def test_nameserver_forms(text, expected):
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize("text", ["ns.example.org", "127.0.0.1:0", "127.0.0.1:99999", "[::1", "[::1]x53",
                                  "127.0.0.1:port", ""])
def test_bad_nameservers(text):
    with pytest.raises(SyntaxProblem):
        parse_nameserver(text)


def test_settings_defaults_and_limits():
    assert parse_dns_settings(None) == DnsSettings()
    s = parse_dns_settings({"nameservers": ["127.0.0.1:5353", "[::1]:5353"], "timeout": 1, "lifetime": 3,
                            "budget": 8})
    assert s.nameservers[1] == Nameserver("::1", 5353) and (s.timeout, s.lifetime, s.budget) == (1, 3, 8)
    assert parse_dns_settings({"timeout": 10}).lifetime == 10            # lifetime follows a long timeout
    for bad in ({"budget": 29}, {"timeout": 3, "lifetime": 2}, {"lifetime": 9, "budget": 8},
                {"nameserver": ["127.0.0.1"]}, {"cache_size": -1}, {"timeout": "soon"}, ["127.0.0.1"],
                {"timeout": True}):
        with pytest.raises(SyntaxProblem):
            parse_dns_settings(bad)


def test_names_become_a_labels():
    assert to_alabel("Bücher.Example.") == "xn--bcher-kva.example"
    assert to_alabel("straße.de") == "xn--strae-oqa.de"                  # IDNA 2008, not "strasse"
    assert to_alabel("MX.Example.ORG") == "mx.example.org"
    for bad in ("", ".", "a..b", "a b.example", "x\r\n.example", "a" * 64 + ".example", "é" * 80 + ".x"):
        with pytest.raises(BadName):
            to_alabel(bad)


def test_literal_names_keep_spaces_and_refuse_control_characters():
    """SPF macro output is asked as is (RFC 7208 §7.3): `%{l}` may expand to spaces."""
    name = to_name("macro%percent  space%20url-space.example.com", literal=True)
    assert name.labels[0] == b"macro%percent  space%20url-space" and name.is_absolute()
    assert to_name("a\\b.example", literal=True).labels[0] == b"a\\b"     # no escape processing
    assert to_name("Bücher.example", literal=True).to_text() == "xn--bcher-kva.example."
    for bad in ("a\r\nb.example", "x\x00.example", "a" * 64 + ".example", "a..b"):
        with pytest.raises(BadName):
            to_name(bad, literal=True)
    with pytest.raises(BadName):
        to_name("a b.example")                      # only SPF asks literally


@given(hs.text(max_size=300))
def test_any_text_is_a_name_or_badname(text):
    try:
        out = to_alabel(text)
    except BadName:
        return
    assert out.isascii() and "\r" not in out and "\n" not in out and len(out) <= 253


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_honours_ttl():
    clock = Clock()
    cache: TtlCache[str] = TtlCache(10, clock)
    cache.put("k", "v", 300)
    clock.now += 299.5
    assert cache.get("k") == "v"
    clock.now += 1
    assert cache.get("k") is None and len(cache) == 0
    cache.put("zero", "v", 0)                                           # TTL 0: never cached
    assert cache.get("zero") is None


def test_cache_is_bounded_lru():
    cache: TtlCache[int] = TtlCache(3, Clock())
    for i in range(3):
        cache.put(i, i, 60)
    assert cache.get(0) == 0                                            # 0 is now the most recent
    cache.put(3, 3, 60)
    assert cache.get(1) is None and cache.get(0) == 0 and len(cache) == 3


def test_cache_threads():
    cache: TtlCache[int] = TtlCache(50, Clock())

    def work(base: int) -> None:
        for i in range(500):
            cache.put((base, i % 70), i, 60)
            cache.get((base, (i * 7) % 70))

    threads = [threading.Thread(target=work, args=(b,)) for b in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(cache) == 50


def test_answer_texts():
    txt = DnsAnswer("x", "TXT", Status.FOUND, ((b"v=spf1 ", b"-all"), (b"\xff",)))
    assert txt.texts() == ["v=spf1 -all", "\ufffd"]
    assert DnsAnswer("x", "MX", Status.FOUND, ((10, "mx.example"),)).texts() == ["10 mx.example"]


class _Sizes:
    """Records what a cache reports to the metrics, as Metrics.cache_size receives it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def cache_size(self, cache: str, entries: int) -> None:
        self.seen.append((cache, entries))


def test_cache_sweeps_expired_entries_by_time_under_the_cap():
    clock, sizes = Clock(), _Sizes()
    cache: TtlCache[int] = TtlCache(1000, clock, name="dns", metrics=lambda: sizes, sweep_every=30)
    for i in range(100):                       # a burst of distinct names, far below the cap
        cache.put(("burst", i), i, 10)
    assert len(cache) == 100 and sizes.seen[-1] == ("dns", 100)
    clock.now += 31                            # all expired, a sweep is due
    cache.put("late", 1, 600)                  # any put (or get) sweeps
    assert len(cache) == 1 and sizes.seen[-1] == ("dns", 1)
    clock.now += 31
    assert cache.get("other") is None and cache.get("late") == 1
    clock.now += 600
    assert cache.get("nothing") is None and len(cache) == 0 and sizes.seen[-1] == ("dns", 0)


# Review 2026-12-07 (rev9): the remembered cache key is the one the old per-query conversion
# gave, for any text, and `literal` names (SPF macro output, spaces allowed) never share an
# entry with ordinary ones.
@given(hs.text(alphabet="aZ09-._ é\u00df\t%\\", max_size=20), hs.booleans())
def test_cache_key_is_the_name_conversion_remembered(text: str, literal: bool) -> None:
    from aclmilter.clients.dns_names import cache_key
    try:
        expected = to_name(text, literal).to_text(omit_final_dot=True).lower()
    except BadName:
        for _ in range(2):          # refused each time: a failure is never remembered
            with pytest.raises(BadName):
                cache_key(text, literal)
        return
    assert cache_key(text, literal) == cache_key(text, literal) == expected


def test_cache_key_keeps_literal_and_ordinary_names_apart() -> None:
    from aclmilter.clients.dns_names import cache_key
    assert cache_key("a b.example", True) == "a\\032b.example"
    with pytest.raises(BadName):      # an ordinary name with a space is refused, remembered or not
        cache_key("a b.example")
