"""File lookups: lsearch file format, wildlsearch keys, iplsearch networks, caching, defer."""

from __future__ import annotations

import threading

import pytest

from aclmilter import errors
from aclmilter.conditions import lookups
from aclmilter.expand import lookup as lookup_mod
from aclmilter.registry import TABLES

from .fakes_ctx import make_ctx

LSEARCH = """\
# a comment
alice: first value
Alice: second (ignored, first wins)
bob    space separated
carol:
"quoted key: with colon" quoted
dave: line one
  continued here
	and here

erin:no space
"""


@pytest.fixture
def lfile(tmp_path):
    f = tmp_path / "lsearch"
    f.write_text(LSEARCH)
    return str(f)


@pytest.mark.parametrize("key,want", [
    ("alice", "first value"),
    ("ALICE", "first value"),
    ("bob", "space separated"),
    ("carol", ""),
    ("quoted key: with colon", "quoted"),
    ("dave", "line one continued here and here"),
    ("erin", "no space"),
    ("frank", None),
    ("#", None),
    ("", None),
])
def test_lsearch(lfile: str, key: str, want: str | None) -> None:
    assert lookups.lsearch(make_ctx(), key, lfile) == want


def test_registered_types() -> None:
    for name in ("lsearch", "wildlsearch", "nwildlsearch", "iplsearch"):
        assert name in TABLES.lookups and not TABLES.lookups[name].query_style


def test_default_key_forms(tmp_path) -> None:
    f = tmp_path / "d"
    f.write_text("*@example.org: domain default\n*: global default\nu@example.org: exact\n")
    ctx = make_ctx()
    assert lookup_mod.find(ctx, "lsearch", "x@example.org", str(f)) is None
    assert lookup_mod.find(ctx, "lsearch*@", "u@example.org", str(f)) == "exact"
    assert lookup_mod.find(ctx, "lsearch*@", "x@example.org", str(f)) == "domain default"
    assert lookup_mod.find(ctx, "lsearch*@", "x@example.com", str(f)) == "global default"
    assert lookup_mod.find(ctx, "lsearch*", "x@example.org", str(f)) == "global default"


@pytest.mark.parametrize("kind", ["wildlsearch", "nwildlsearch"])
@pytest.mark.parametrize("key,want", [
    ("exact.example", "literal"),
    ("EXACT.example", "literal"),
    ("mail.example.com", "suffix"),
    ("mail42.example.net", "regex"),
    ("mailx.example.net", "fallback"),
])
def test_wildlsearch(tmp_path, kind: str, key: str, want: str) -> None:
    f = tmp_path / "w"
    f.write_text('exact.example: literal\n*.example.com: suffix\n"^mail\\\\d+\\\\.example\\\\.net$": regex\n'
                 '"^(bad": never\n*: fallback\n')
    finder = getattr(lookups, kind)
    assert finder(make_ctx(), key, str(f)) == want


@pytest.mark.parametrize("key,want", [
    ("192.0.2.77", "doc"),
    ("192.0.2.1", "host"),
    ("10.9.8.7", "ten"),
    ("::ffff:10.9.8.7", "ten"),
    ("2001:db8::1", "v6"),
    ("2001:db9::1", None),
    ("203.0.113.1", None),
    ("not-an-ip", None),
    ("192.0.2.0/25", "doc"),
])
def test_iplsearch(tmp_path, key: str, want: str | None) -> None:
    f = tmp_path / "ip"
    f.write_text('192.0.2.1: host\n192.0.2.0/24: doc\n10.0.0.0/8 ten\n"2001:db8::/32": v6\nbogus: x\n')
    assert lookups.iplsearch(make_ctx(), key, str(f)) == want


def test_iplsearch_unquoted_ipv6_key_followed_by_space(tmp_path) -> None:
    f = tmp_path / "ip6"
    f.write_text("2001:db8::/32 v6\n")
    assert lookups.iplsearch(make_ctx(), "2001:db8::9", str(f)) == "v6"


def test_unreadable_file_raises_naming_it(tmp_path) -> None:
    missing = str(tmp_path / "absent-file")
    for finder in (lookups.lsearch, lookups.wildlsearch, lookups.iplsearch):
        with pytest.raises(errors.FileUnreadable, match="absent-file"):
            finder(make_ctx(), "192.0.2.1", missing)
    with pytest.raises(errors.FileUnreadable):
        lookups.lsearch(make_ctx(), "k", str(tmp_path))     # a directory


def test_cache_follows_file_changes(tmp_path) -> None:
    f = tmp_path / "c"
    f.write_text("k: one\n")
    assert lookups.lsearch(make_ctx(), "k", str(f)) == "one"
    f.write_text("k: two, longer\n")
    assert lookups.lsearch(make_ctx(), "k", str(f)) == "two, longer"


def test_concurrent_lookups_agree(tmp_path) -> None:
    f = tmp_path / "many"
    f.write_text("".join(f"key{i}: value{i}\n" for i in range(500)))
    errors_seen: list[str] = []

    def worker(offset: int) -> None:
        ctx = make_ctx()
        for i in range(offset, 500, 7):
            if lookups.lsearch(ctx, f"KEY{i}", str(f)) != f"value{i}":
                errors_seen.append(f"key{i}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors_seen == []


def test_parse_entries_keeps_file_order() -> None:
    entries = lookups.parse_entries("b: 1\na: 2\nb: 3\n")
    assert [(e.key, e.value) for e in entries] == [("b", "1"), ("a", "2"), ("b", "3")]
