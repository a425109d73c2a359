"""checks/dnslists.py: Exim's `dnslists` syntax and matching, with a table for the DNS.
(Against real DNS and real Exim: tests/integration/test_dnslists.py and the dnslists cases
of tests/fixtures/exim/cases.yaml.)"""

from __future__ import annotations

import pytest

from aclmilter.checks import dnslists as dl
from aclmilter.errors import LookupDefer, SyntaxProblem


class Table:
    """(name, type) -> records; names in `dead` cannot be answered now. Records every query."""

    def __init__(self, records: dict[tuple[str, str], tuple[str, ...]], dead: tuple[str, ...] = ()) -> None:
        self.records, self.dead, self.asked = records, dead, []

    def __call__(self, name: str, rdtype: str) -> tuple[str, ...]:
        self.asked.append((name, rdtype))
        if name in self.dead:
            raise LookupDefer(f"timeout for {name}")
        return self.records.get((name, rdtype), ())


def test_parse_operators_zones_keys_and_options() -> None:
    items = dl.parse("+defer_unknown : txt.x,bl.x!=&0.0.0.1,0.0.0.2/<;192.0.2.1;a.example : "
                     "+include_unknown : d.x/n1::n2 : z.x==127.0.0.2")
    first, second, third = items
    assert (first.zone, first.txt_zone, first.keys, first.unknown) == \
        ("bl.x", "txt.x", ("192.0.2.1", "a.example"), dl.Unknown.DEFER)
    assert first.restriction == dl.Restriction((1, 2), bitmask=True, every=True, negated=True)
    assert (second.keys, second.restriction, second.unknown) == (("n1", "n2"), None, dl.Unknown.INCLUDE)
    assert third.restriction == dl.Restriction((2130706434,), bitmask=False, every=True, negated=False)


@pytest.mark.parametrize("text", ["bl.x=127.0.0.2&0.0.0.8", "bl.x=>127.0.0.1", "bl.x=&&0.0.0.1",
                                  "+maybe_unknown : bl.x", "bl..x", "bl.x!!=127.0.0.1", "a b.x"])
def test_parse_errors_are_syntax_problems(text: str) -> None:
    with pytest.raises(SyntaxProblem):
        dl.parse(text)


def test_reversed_keys() -> None:
    assert dl.reversed_key("192.0.2.1") == "1.2.0.192"
    assert dl.reversed_key("::ffff:192.0.2.1") == "1.2.0.192"
    assert dl.reversed_key("2001:db8::1") == "1." + "0." * 23 + "8.b.d.0.1.0.0.2"
    assert dl.reversed_key("Evil.Example.") == "evil.example"
    # a key is an address only as written (the host-list form with `IPv6:` is a name here)
    assert dl.reversed_key(" 192.0.2.1") == " 192.0.2.1"
    assert dl.reversed_key("IPv6:2001:db8::1") == "ipv6:2001:db8::1"


@pytest.mark.parametrize("text,plain", [
    ("192.0.2.1", "192.0.2.1"), ("::ffff:192.0.2.1", "192.0.2.1"), ("::ffff:c000:201", "192.0.2.1"),
    ("::ffff:192.0.2.1%eth0", "192.0.2.1"), ("2001:db8::1", "2001:db8::1"), ("fe80::1%eth0", "fe80::1%eth0"),
    ("2001:DB8::1", "2001:DB8::1"), ("", ""), ("not an address", "not an address"),
    ("IPv6:::ffff:192.0.2.1", "IPv6:::ffff:192.0.2.1"), (" 192.0.2.1", " 192.0.2.1"),
])
def test_one_reading_of_addresses(text: str, plain: str) -> None:
    """spf.plain_ip, dnslists.reversed_key and lists.hosts.client_ip share lists.hosts.parse_ip."""
    from aclmilter.checks.spf import plain_ip
    from aclmilter.lists.hosts import client_ip, parse_ip
    assert plain_ip(text) == plain
    parsed = parse_ip(text)
    if "%" not in text:         # a scoped address has no reverse name (ipaddress raises, as before)
        assert (parsed is None) == (dl.reversed_key(text) == text.strip(".").lower())
    if text.strip() and not text.lower().startswith("ipv6:"):
        assert client_ip(text) == parse_ip(text.strip())


@pytest.mark.parametrize(("op", "listed", "expected"), [
    ("=", "127.0.0.2", True), ("=", "127.0.0.3", False), ("==", "127.0.0.2", False),
    ("==", "127.0.0.2,127.0.0.10", True), ("!=", "127.0.0.2", False), ("!==", "127.0.0.2", True),
    ("&", "0.0.0.8", True), ("&", "0.0.0.3", False), ("=&", "0.0.0.2", True), ("=&", "0.0.0.8", False),
    ("!&", "0.0.0.8", False), ("!&", "0.0.0.1", True), ("!=&", "0.0.0.8", True), ("!=&", "0.0.0.2", False),
])
def test_restrictions_on_two_records(op: str, listed: str, expected: bool) -> None:
    """The list returns 127.0.0.2 and 127.0.0.10 (spec "Handling multiple DNS records")."""
    table = Table({("1.2.0.192.bl.x", "A"): ("127.0.0.2", "127.0.0.10")})
    got = dl.evaluate(dl.parse(f"bl.x{op}{listed}"), "192.0.2.1", table)
    assert isinstance(got, dl.Listed) is expected, got


def test_first_listed_item_wins_and_sets_the_variables() -> None:
    table = Table({("1.2.0.192.a.x", "A"): ("127.0.0.4",), ("1.2.0.192.b.x", "A"): ("127.0.0.2",),
                   ("1.2.0.192.b.x", "TXT"): ("see b",)})
    got = dl.evaluate(dl.parse("a.x=127.0.0.2 : b.x : c.x"), "192.0.2.1", table)
    assert got == dl.Listed("b.x", "192.0.2.1", "127.0.0.2", "see b")
    assert ("1.2.0.192.c.x", "A") not in table.asked        # stops at the first listed item


def test_answers_outside_127_are_ignored_and_no_client_no_key_is_not_listed() -> None:
    table = Table({("1.2.0.192.a.x", "A"): ("192.0.2.99",)})
    assert dl.evaluate(dl.parse("a.x"), "192.0.2.1", table) is dl.Outcome.NOT_LISTED
    assert dl.evaluate(dl.parse("a.x"), "", table) is dl.Outcome.NOT_LISTED
    assert table.asked == [("1.2.0.192.a.x", "A")]


def test_two_zones_ask_the_restricted_one_first() -> None:
    table = Table({("1.2.0.192.merged.x", "A"): ("127.0.0.10",), ("1.2.0.192.dul.x", "A"): ("127.0.0.2",),
                   ("1.2.0.192.dul.x", "TXT"): ("dial-up",)})
    assert dl.evaluate(dl.parse("dul.x,merged.x=127.0.0.2"), "192.0.2.1", table) is dl.Outcome.NOT_LISTED
    assert table.asked == [("1.2.0.192.merged.x", "A")]
    got = dl.evaluate(dl.parse("dul.x,merged.x=127.0.0.10"), "192.0.2.1", table)
    assert got == dl.Listed("dul.x", "192.0.2.1", "127.0.0.2", "dial-up")


@pytest.mark.parametrize(("prefix", "expected"), [
    ("", dl.Outcome.NOT_LISTED), ("+include_unknown :", dl.Listed("a.x", "192.0.2.9", "", "")),
    ("+defer_unknown :", dl.Outcome.DEFER)])
def test_a_list_that_cannot_answer(prefix: str, expected: object) -> None:
    table = Table({}, dead=("9.2.0.192.a.x",))
    assert dl.evaluate(dl.parse(f"{prefix} a.x/192.0.2.9"), "192.0.2.1", table) == expected


def test_a_later_key_that_is_listed_overrides_a_temporary_error() -> None:
    table = Table({("1.2.0.192.a.x", "A"): ("127.0.0.2",)}, dead=("9.2.0.192.a.x",))
    got = dl.evaluate(dl.parse("+defer_unknown : a.x/192.0.2.9::192.0.2.1"), "192.0.2.7", table)
    assert isinstance(got, dl.Listed) and got.matched == "192.0.2.1"


def test_a_failed_txt_lookup_leaves_the_text_empty() -> None:
    def resolve(name: str, rdtype: str) -> tuple[str, ...]:
        if rdtype == "TXT":
            raise LookupDefer("timeout")
        return ("127.0.0.2",)
    got = dl.evaluate(dl.parse("+defer_unknown : a.x"), "192.0.2.1", resolve)
    assert got == dl.Listed("a.x", "192.0.2.1", "127.0.0.2", "")
