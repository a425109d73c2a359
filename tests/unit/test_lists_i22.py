"""List items added for issue 22: `partial-` lookups, `@mx_*` domain items, `@@type;file` address
items, with the Exim specification's own examples (real `exim -be` comparisons are in
tests/integration/test_exim_be.py)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from aclmilter import errors, lists
from aclmilter.expand import parse
from aclmilter.expand.partial import keys
from aclmilter.outcome import Result

from tests.builders import loader_settings

from .fakes_ctx import FakeDns, make_ctx

OK, FAIL, DEFER = Result.OK, Result.FAIL, Result.DEFER


def m(text: str, kind: str, subject: str, **kw) -> Result:
    return lists.match(make_ctx(**kw), lists.parse_list(text, kind), subject, kind)


# ---- partial- ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key,minimum,prefix,want", [
    # spec 9.7: "2250.dates.fict.example" with the default partial2-
    ("2250.dates.fict.example", 2, "*.", ["2250.dates.fict.example", "*.2250.dates.fict.example",
                                         "*.dates.fict.example", "*.fict.example"]),
    # spec: partial(.)lsearch on a.b.c -> a.b.c, .a.b.c, .b.c
    ("a.b.c", 2, ".", ["a.b.c", ".a.b.c", ".b.c"]),
    # spec: partial1()cdb on a.b.c -> a.b.c, b.c, c
    ("a.b.c", 1, "", ["a.b.c", "b.c", "c"]),
    # spec: partial0 with the default prefix ends with "*" on its own
    ("a.b", 0, "*.", ["a.b", "*.a.b", "*.b", "*"]),
    ("a.b", 0, ".", ["a.b", ".a.b", ".b", "."]),
])
def test_partial_key_sequence(key: str, minimum: int, prefix: str, want: list[str]) -> None:
    assert list(keys(key, minimum, prefix)) == want


@pytest.fixture()
def domains(tmp_path: Path) -> str:
    f = tmp_path / "domains"
    f.write_text("*.dates.fict.example: wild\nexact.example: exact\n*.deep.a.b.example: deep\n*: star\n")
    return str(f)


@pytest.mark.parametrize("type_name,key,want", [
    ("partial-lsearch", "2001.dates.fict.example", "wild"),
    ("partial-lsearch", "dates.fict.example", "wild"),     # "also matched by dates.fict.example"
    ("partial-lsearch", "fict.example", ""),
    ("partial-lsearch", "exact.example", "exact"),
    ("partial-lsearch", "x.exact.example", ""),            # keys without the prefix match only unmodified
    ("partial4-lsearch", "x.deep.a.b.example", "deep"),
    ("partial5-lsearch", "x.deep.a.b.example", ""),
    ("partial-lsearch*", "nothing.example", "star"),       # the * default comes after the partial keys
    ("partial0-lsearch", "nothing.example", "star"),
])
def test_partial_lookup_item(domains: str, type_name: str, key: str, want: str) -> None:
    assert parse(f"${{lookup{{{key}}}{type_name}{{{domains}}}}}").evaluate(make_ctx()) == want


def test_partial_in_domain_list_and_refusals(domains: str) -> None:
    assert m(f"partial-lsearch;{domains}", "domain", "a.dates.fict.example") is OK
    assert m(f"partial-lsearch;{domains}", "domain", "other.example") is FAIL
    spec = lists.parse_list(f"partial-lsearch;{domains}", "address")
    assert "not available for lookup items in address lists" in str(lists.validate(spec, {}, "address")[0])
    with pytest.raises(errors.SyntaxProblem, match="single-key"):
        parse("${lookup partial-redis{GET x}}")


# ---- @mx_any / @mx_primary / @mx_secondary -------------------------------------------------------

def _mx_dns() -> FakeDns:
    return FakeDns({
        ("primary.example", "MX"): ["10 mx.local.example", "20 backup.other.example"],
        ("secondary.example", "MX"): ["10 mx.other.example", "20 mx.local.example"],
        ("elsewhere.example", "MX"): ["10 mx.other.example"],
        ("nullmx.example", "MX"): ["0 ."],
        ("mx.local.example", "A"): ["198.51.100.1"],      # the local address of make_ctx()
        ("mx.other.example", "A"): ["203.0.113.9"],
        ("backup.other.example", "A"): ["203.0.113.10"],
    }, defer={"broken.example"})


@pytest.mark.parametrize("item,domain,want", [
    ("@mx_any", "primary.example", OK), ("@mx_primary", "primary.example", OK),
    ("@mx_secondary", "primary.example", FAIL),
    ("@mx_any", "secondary.example", OK), ("@mx_primary", "secondary.example", FAIL),
    ("@mx_secondary", "secondary.example", OK),
    ("@mx_any", "elsewhere.example", FAIL), ("@mx_any", "nullmx.example", FAIL),
    ("@mx_any", "nomx.example", FAIL),
    ("@mx_any", "broken.example", DEFER),                 # DNS failure: DEFER, as in Exim
    ("@mx_any/ignore=198.51.100.0/24", "primary.example", FAIL),
    ("<; @mx_any/ignore=<,192.0.2.1,198.51.100.1", "primary.example", FAIL),
    ("@mx_any/ignore=192.0.2.1", "primary.example", OK),
])
def test_mx_items(item: str, domain: str, want: Result) -> None:
    assert m(item, "domain", domain, dns=_mx_dns()) is want


def test_mx_local_interfaces_and_hosts_treat_as_local() -> None:
    assert m("@mx_any", "domain", "elsewhere.example", dns=_mx_dns()) is FAIL
    ctx = make_ctx(dns=_mx_dns(), settings=loader_settings({"local_interfaces": "<; 2001:db8::1 ; 203.0.113.0/24"}))
    assert lists.match(ctx, lists.parse_list("@mx_primary", "domain"), "elsewhere.example") is OK
    ctx = make_ctx(dns=_mx_dns(), settings=loader_settings({"local_interfaces": ["203.0.113.1"]}))
    assert lists.match(ctx, lists.parse_list("@mx_primary", "domain"), "elsewhere.example") is FAIL
    ctx = make_ctx(dns=_mx_dns(), settings={"hosts_treat_as_local": "*.other.example"})
    assert lists.match(ctx, lists.parse_list("@mx_primary", "domain"), "secondary.example") is OK


def test_local_interfaces_are_parsed_at_policy_load() -> None:
    """The setting holds networks (lists/mx.py no longer parses it per address it tests)."""
    parsed = loader_settings({"local_interfaces": "<; 192.0.2.1 ; 2001:db8::/32"})["local_interfaces"]
    assert parsed == (ipaddress.ip_network("192.0.2.1/32"), ipaddress.ip_network("2001:db8::/32"))
    with pytest.raises(errors.SyntaxProblem, match="local_interfaces"):
        loader_settings({"local_interfaces": ["192.0.2"]})


@pytest.mark.parametrize("text,fragment", [
    ("@mx_all", "unknown item"), ("@mx_any/skip=1.2.3.4", "only option"),
    ("@mx_any/ignore=1.2.3", "is not an IP address"),
])
def test_mx_validation(text: str, fragment: str) -> None:
    problems = lists.validate(lists.parse_list(text, "domain"), {}, "domain")
    assert problems and fragment in str(problems[0])


# ---- @@lsearch ------------------------------------------------------------------------------------

@pytest.fixture()
def by_domain(tmp_path: Path) -> str:
    f = tmp_path / "by-domain"
    # the spec's examples: "baddomain.com: !postmaster : *", continuation lines, ">" chains
    f.write_text("baddomain.com:  !postmaster : *\n"
                 "aol.com:  spammer1 : spammer2 : ^[0-9]+$ :\n  spammer3 : spammer4\n"
                 "chain.example: spammer5 : >*\n"
                 "loop.example: >loop.example\n"
                 "*: ^\\d{8}$\n")
    return str(f)


@pytest.mark.parametrize("address,want", [
    ("anyone@baddomain.com", OK), ("postmaster@baddomain.com", FAIL), ("POSTMASTER@BadDomain.com", FAIL),
    ("spammer4@aol.com", OK), ("12345@aol.com", OK), ("friend@aol.com", FAIL),
    ("x@unlisted.example", FAIL),
    ("spammer5@chain.example", OK), ("12345678@chain.example", OK), ("friend@chain.example", FAIL),
    ("x@loop.example", DEFER), ("", FAIL),
])
def test_atat_lsearch(by_domain: str, address: str, want: Result) -> None:
    assert m(f"@@lsearch;{by_domain}", "address", address) is want


def test_atat_star_default_and_validation(by_domain: str) -> None:
    assert m(f"@@lsearch*;{by_domain}", "address", "12345678@unlisted.example") is OK
    assert m(f"@@lsearch;{by_domain}", "address", "12345678@unlisted.example") is FAIL
    problems = lists.validate(lists.parse_list("@@lsearch;relative : @@nosuch;/f : @@x", "address"), {}, "address")
    assert [("absolute" in str(p), "unknown" in str(p), "lookup item" in str(p)) for p in problems] == \
        [(True, False, False), (False, True, False), (False, False, True)]


@pytest.mark.parametrize("key,type_name,want", [
    ("2001.x.dates.fict.example", "partial-lsearch", "[2001.x][dates.fict.example][wild]"),
    ("exact.example", "partial-lsearch", "[][exact.example][exact]"),
    ("dates.fict.example", "partial-lsearch", "[][dates.fict.example][wild]"),
    ("nothing.example", "partial-lsearch*", "[nothing.example][][star]"),
])
def test_partial_lookup_sets_wild_and_fixed_parts(domains: str, key: str, type_name: str, want: str) -> None:
    assert parse(f"${{lookup{{{key}}}{type_name}{{{domains}}}{{[$1][$2][$value]}}}}").evaluate(make_ctx()) == want
