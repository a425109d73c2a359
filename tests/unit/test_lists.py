"""List parsing and matching: separators, negation, named lists, CIDR, names, files, lookups."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings, strategies as st

from aclmilter import errors, lists
from aclmilter.outcome import Result

from .fakes_ctx import FakeDns, make_ctx

OK, FAIL, DEFER = Result.OK, Result.FAIL, Result.DEFER


def m(text: str, kind: str, subject: str | None, **kw) -> Result:
    ctx = make_ctx(**kw)
    return lists.match(ctx, lists.parse_list(text, kind), subject, kind)


# ---- splitting -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,items", [
    ("a : b : c", ["a", "b", "c"]),
    ("a:b:", ["a", "b"]),
    (":", [""]),
    ("", []),
    ("a : : b", ["a", "", "b"]),
    ("127.0.0.1 : ::::1", ["127.0.0.1", "::1"]),
    ("<; 2001:db8::1 ; 10.0.0.1", ["2001:db8::1", "10.0.0.1"]),
    ("<, a, b", ["a", "b"]),
    ("<\\n a\n b", ["a", "b"]),
    ("<\na\n\nb", ["a", "", "b"]),
])
def test_split(text: str, items: list[str]) -> None:
    assert lists.parse_list(text, "string").static_items == tuple(items)
    assert lists.items(make_ctx(), lists.parse_list(text, "string")) == items


@pytest.mark.parametrize("items", [
    ["a", "b"], ["::1", "10.0.0.0/8"], [""], ["a", ""], ["$h_x:", "a;b", "c,d"], ["<;x", "y"],
    [":", ";", ",", "|", "%", "&", "~"],
])
def test_join_items_round_trips(items: list[str]) -> None:
    text = lists.join_items(items)
    assert lists.split_text(text) == items
    spec = lists.parse_list(text, "string")
    assert spec.static_items is None or list(spec.static_items) == items


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ab:;,|%&~<!* \n", max_size=6).map(str.strip)
                .filter(lambda s: "\n" not in s), max_size=5))
def test_join_items_round_trips_property(items: list[str]) -> None:
    assert lists.split_text(lists.join_items(items)) == items


def test_parse_error_offset_counts_separator_prefix() -> None:
    with pytest.raises(errors.SyntaxProblem) as exc:
        lists.parse_list("<; a ; $nosuchvar", "host")
    assert exc.value.offset == 7


# ---- host lists ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,address,want", [
    ("192.0.2.0/24", "192.0.2.10", OK),
    ("192.0.2.10", "192.0.2.10", OK),
    ("192.0.2.11", "192.0.2.10", FAIL),
    ("10.0.0.0/8 : 192.0.2.0/25", "192.0.2.10", OK),
    ("<; 2001:db8::/32", "2001:db8::5", OK),
    ("2001::db8::::/32", "2001:db8::5", OK),
    ("<; 2001:db8::/32", "192.0.2.1", FAIL),
    ("192.0.2.0/24", "::ffff:192.0.2.9", OK),
    ("<; ::ffff:192.0.2.0/120", "192.0.2.9", OK),
    ("*", "192.0.2.10", OK),
    ("*", "", OK),
    (":", "", OK),
    (":", "192.0.2.10", FAIL),
    ("!192.0.2.10", "192.0.2.10", FAIL),
    ("!192.0.2.10", "192.0.2.11", OK),
    ("!192.0.2.0/24 : 192.0.2.10", "192.0.2.10", FAIL),
    ("192.0.2.10 : !192.0.2.0/24", "192.0.2.10", OK),
    ("192.0.2.1 : !192.0.2.0/24 : 10.0.0.1", "192.0.2.99", FAIL),
    ("192.0.2.1 : !192.0.2.0/24 : 10.0.0.1", "10.0.0.2", FAIL),
    ("1.2.3/24", "1.2.3.4", FAIL),
    ("+include_unknown : 1.2.3/24", "1.2.3.4", OK),
    ("+ignore_unknown : 1.2.3/24 : 1.2.3.4", "1.2.3.4", OK),
])
def test_host_ip_items(text: str, address: str, want: Result) -> None:
    assert m(text, "host", None, address=address) is want


def test_host_subject_overrides_client() -> None:
    assert m("10.0.0.0/8", "host", "10.1.1.1", address="192.0.2.1") is OK


def test_host_validate_malformed_cidr() -> None:
    spec = lists.parse_list("10.0.0.0/8 : 1.2.3/24 : 10.0.0.0/33", "host")
    problems = lists.validate(spec, {}, "host")
    assert [p.offset for p in problems] == [13, 24]


DNS = FakeDns({("mx.example.net", "A"): ["192.0.2.10"], ("v6.example.net", "AAAA"): ["2001:db8::10"],
               ("other.example.net", "A"): ["192.0.2.99"]}, defer={"slow.example.net"})


@pytest.mark.parametrize("text,address,want", [
    ("mx.example.net", "192.0.2.10", OK),
    ("other.example.net", "192.0.2.10", FAIL),
    ("v6.example.net", "2001:db8::10", OK),
    ("nx.example.net", "192.0.2.10", FAIL),                  # unknown: the list fails
    ("!nx.example.net", "192.0.2.10", FAIL),
    ("+include_unknown : nx.example.net", "192.0.2.10", OK),
    ("+ignore_unknown : nx.example.net : mx.example.net", "192.0.2.10", OK),
    ("slow.example.net", "192.0.2.10", DEFER),
    ("slow.example.net : 192.0.2.10", "192.0.2.10", DEFER),
    ("192.0.2.10 : slow.example.net", "192.0.2.10", OK),
    ("+ignore_defer : slow.example.net : mx.example.net", "192.0.2.10", OK),
    ("+include_defer : slow.example.net", "192.0.2.10", OK),
    ("+include_defer : !slow.example.net", "192.0.2.10", FAIL),
])
def test_host_names(text: str, address: str, want: Result) -> None:
    assert m(text, "host", None, address=address, dns=DNS) is want


@pytest.mark.parametrize("text,name,want", [
    ("*.example.com", "mail.Example.COM", OK),
    ("*.example.com", "example.org", FAIL),
    (r"\N^mail\d+\.example\.com$\N", "mail12.example.com", OK),
    (r"\N^mail\d+\.example\.com$\N", "mailx.example.com", FAIL),
    ("*.example.com", "", FAIL),                               # no name: unknown
    ("+ignore_unknown : *.example.com : 192.0.2.10", "", OK),
])
def test_host_name_patterns(text: str, name: str, want: Result) -> None:
    assert m(text, "host", None, address="192.0.2.10", name=name) is want


def test_host_lookup_items_set_host_data(tmp_path) -> None:
    f = tmp_path / "nets"
    f.write_text("192.0.2.0/24: doc-net\n192.168.34.0/24 private\n")
    ctx = make_ctx(address="192.0.2.10")
    assert lists.match(ctx, lists.parse_list(f"iplsearch;{f}", "host"), None) is OK
    assert ctx.locals["host_data"] == "doc-net"
    g = tmp_path / "masked"
    g.write_text("192.168.34.0/24: net24\n192.168.34.5: exact\n")
    ctx = make_ctx(address="192.168.34.5")
    assert lists.match(ctx, lists.parse_list(f"net24-lsearch;{g}", "host"), None) is OK
    assert ctx.locals["host_data"] == "net24"
    assert lists.match(ctx, lists.parse_list(f"net-lsearch;{g}", "host"), None) is OK
    assert ctx.locals["host_data"] == "exact"
    ctx = make_ctx(address="203.0.113.1")
    assert lists.match(ctx, lists.parse_list(f"net24-lsearch;{g}", "host"), None) is FAIL


def test_host_lookup_by_name(tmp_path) -> None:
    f = tmp_path / "names"
    f.write_text("mx.example.net: good\n")
    assert m(f"lsearch;{f}", "host", None, name="MX.example.net") is OK
    assert m(f"lsearch;{f}", "host", None, name="") is FAIL


# ---- named lists -----------------------------------------------------------------------------------

NAMED = {"host": {"relays": "192.0.2.0/24 : 10.0.0.1", "neg": "!192.0.2.10",
                  "loop": "+loop"},
         "domain": {"local": "example.org : *.example.net"}}


@pytest.mark.parametrize("text,address,want", [
    ("+relays", "192.0.2.10", OK),
    ("+relays", "203.0.113.1", FAIL),
    ("!+relays", "192.0.2.10", FAIL),
    ("!+relays", "203.0.113.1", OK),
    ("!+relays : 203.0.113.1", "203.0.113.1", OK),
    ("+neg", "203.0.113.1", OK),             # inside the named list the implicit * applies
    ("+neg", "192.0.2.10", FAIL),
    ("+neg : 192.0.2.10", "192.0.2.10", OK),  # ... but does not propagate outwards
    ("+missing", "192.0.2.10", DEFER),
    ("+loop", "192.0.2.10", DEFER),
])
def test_named_host_lists(text: str, address: str, want: Result) -> None:
    assert m(text, "host", None, address=address, named=NAMED) is want


def test_validate_named_references() -> None:
    spec = lists.parse_list("+relays : +nope : !+other", "host")
    problems = lists.validate(spec, {"host": {"relays"}}, "host")
    assert ["nope" in str(p) for p in problems] == [True, False]
    assert [p.offset for p in problems] == [10, 18]
    spec = lists.parse_list("*@+local : u@+nolist", "address")
    assert [str(p) for p in lists.validate(spec, {"domain": {"local"}}, "address")] == \
        ["unknown named domain list +nolist"]


def test_validate_lookup_types_and_regex() -> None:
    spec = lists.parse_list(r"nosuch;/f : lsearch;relative : \N^(\N", "domain")
    msgs = [str(p) for p in lists.validate(spec, {}, "domain")]
    assert len(msgs) == 3
    assert "unknown lookup type" in msgs[0] and "absolute" in msgs[1] and "regular" in msgs[2]


def test_dynamic_lists_are_not_validated_at_load() -> None:
    spec = lists.parse_list("$acl_m_x : +nope", "host")
    assert not spec.is_static and lists.validate(spec, {}, "host") == []


# ---- domain, local part, address, string ------------------------------------------------------------

@pytest.mark.parametrize("text,subject,want", [
    ("example.org", "EXAMPLE.org", OK),
    ("*example.org", "donkeyexample.org", OK),
    ("*.example.org", "example.org", FAIL),
    (r"\N^ex.*\.org$\N", "Example.ORG", OK),
    ("+local", "a.example.net", OK),
    ("!+local : *", "example.org", FAIL),
    ("@", "mail.example.org", OK),
    ("@", "other.example.org", FAIL),
    ("@[]", "[198.51.100.1]", OK),
])
def test_domain_lists(text: str, subject: str, want: Result) -> None:
    assert m(text, "domain", subject, named=NAMED,
             settings={"primary_hostname": "mail.example.org"}) is want


def test_domain_at_without_primary_hostname_never_matches() -> None:
    assert m("@", "domain", "mail.example.org") is FAIL


@pytest.mark.parametrize("text,subject,want", [
    ("*@example.org", "Joe@EXAMPLE.org", OK),
    ("joe@example.org", "JOE@example.org", OK),
    ("+caseful : joe@example.org", "JOE@example.org", FAIL),
    ("+caseful : JOE@example.org", "JOE@Example.org", OK),
    ("*-request@example.org", "list-Request@example.org", OK),
    ("example.org", "joe@example.org", OK),
    ("*.example.org", "joe@sub.example.org", OK),
    ("*@+local", "joe@x.example.net", OK),
    ("*@+local", "joe@example.com", FAIL),
    (":", "", OK),
    (":", "joe@example.org", FAIL),
    ("*@example.org", "", FAIL),
    (r"\N^[a-z]+@example\.org$\N", "joe@example.org", OK),
    ("!*@spam.example : *@*example", "joe@spam.example", FAIL),
])
def test_address_lists(text: str, subject: str, want: Result) -> None:
    assert m(text, "address", subject, named=NAMED) is want


def test_address_lookup_forms(tmp_path) -> None:
    f = tmp_path / "senders"
    f.write_text("joe@example.org: joe-data\n*@example.net: dom-data\n")
    ctx = make_ctx()
    assert lists.match(ctx, lists.parse_list(f"lsearch;{f}", "address"), "Joe@example.org") is OK
    assert ctx.locals["list_data"] == "joe-data"
    assert lists.match(ctx, lists.parse_list(f"lsearch*@;{f}", "address"), "x@example.net") is OK
    assert ctx.locals["list_data"] == "dom-data"
    assert lists.match(ctx, lists.parse_list(f"lsearch;{f}", "address"), "x@example.net") is FAIL
    assert lists.match(ctx, lists.parse_list(f"lsearch;{f}", "address"), "") is FAIL


@pytest.mark.parametrize("text,subject,want", [
    ("postmaster : abuse", "Postmaster", OK),
    ("+caseful : postmaster", "Postmaster", FAIL),
    ("*-bounces", "list-bounces", OK),
])
def test_localpart_lists(text: str, subject: str, want: Result) -> None:
    assert m(text, "localpart", subject) is want


def test_string_lists_are_case_sensitive() -> None:
    assert m("PLAIN : LOGIN", "string", "PLAIN") is OK
    assert m("PLAIN : LOGIN", "string", "plain") is FAIL
    assert m("*", "string", "anything") is OK


# ---- expansion inside lists ---------------------------------------------------------------------------

def test_list_is_expanded_then_split() -> None:
    ctx = make_ctx(address="192.0.2.10")
    ctx.set_var("acl_m_nets", "10.0.0.0/8 : 192.0.2.0/24")
    assert lists.match(ctx, lists.parse_list("$acl_m_nets", "host"), None) is OK
    assert lists.items(ctx, lists.parse_list("<; a ; $acl_m_nets", "string")) == ["a", "10.0.0.0/8 : 192.0.2.0/24"]


def test_forced_failure_means_not_in_list() -> None:
    assert m("${if eq{a}{b}{*}fail}", "host", None) is FAIL
    assert m("!${if eq{a}{b}{*}fail}", "host", None) is FAIL


def test_other_expansion_failure_defers() -> None:
    ctx = make_ctx()
    assert lists.match(ctx, lists.parse_list("${if ={x}{1}{*}}", "host"), None) is DEFER
    assert ctx.log_lines


# ---- file items --------------------------------------------------------------------------------------

def test_file_items(tmp_path) -> None:
    f = tmp_path / "hosts"
    f.write_text("# comment\n\n10.0.0.0/8   # trailing comment\n!192.0.2.10\n192.0.2.0/24\n")
    assert m(str(f), "host", None, address="10.1.1.1") is OK
    assert m(str(f), "host", None, address="192.0.2.10") is FAIL
    assert m(str(f), "host", None, address="192.0.2.11") is OK
    assert m(f"!{f}", "host", None, address="10.1.1.1") is FAIL
    assert m(f"{f} : 203.0.113.1", "host", None, address="203.0.113.1") is OK


def test_unreadable_file_is_an_error_and_logged(tmp_path) -> None:
    """ERROR, not DEFER: Exim ends the session on a lookup file it cannot open."""
    ctx = make_ctx()
    missing = tmp_path / "nope"
    assert lists.match(ctx, lists.parse_list(str(missing), "host"), None) is Result.ERROR
    assert any("nope" in line for line in ctx.log_lines)
    assert lists.match(ctx, lists.parse_list(f"lsearch;{missing}", "domain"), "x") is Result.ERROR


def test_file_changes_are_seen(tmp_path) -> None:
    f = tmp_path / "d"
    f.write_text("a.example\n")
    spec = lists.parse_list(str(f), "domain")
    assert lists.match(make_ctx(), spec, "b.example") is FAIL
    f.write_text("a.example\nb.example\n")
    assert lists.match(make_ctx(), spec, "b.example") is OK


# ---- properties --------------------------------------------------------------------------------------

ITEM = st.text(alphabet="0123456789abcdef.:/!*^+@<; \\$-_", max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(ITEM, max_size=4), st.text(alphabet="0123456789abcdef.:@", max_size=20),
       st.sampled_from(["host", "domain", "address", "localpart", "string"]))
def test_match_never_raises(items: list[str], subject: str, kind: str) -> None:
    text = lists.join_items(items)
    try:
        spec = lists.parse_list(text, kind)
    except errors.SyntaxProblem:
        return
    dns = FakeDns(defer={"x"})
    ctx = make_ctx(address="192.0.2.1", dns=dns, named={})
    assert lists.match(ctx, spec, subject if kind != "host" else None) in (OK, FAIL, DEFER, Result.ERROR)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.integers(0, 2 ** 32 - 1).map(lambda n: ipaddress.IPv4Address(n)),
                 st.integers(0, 2 ** 128 - 1).map(lambda n: ipaddress.IPv6Address(n))),
       st.integers(0, 128), st.integers(0, 2 ** 128 - 1))
def test_cidr_agrees_with_ipaddress(client, bits: int, netbits: int) -> None:
    if client.version == 4:
        base = ipaddress.IPv4Address(netbits % 2 ** 32)
        bits %= 33
    else:
        base = ipaddress.IPv6Address(netbits)
    net = ipaddress.ip_network(f"{base}/{bits}", strict=False)
    if client.version == 6 and client.ipv4_mapped is not None:
        return    # mapped clients are compared as IPv4: covered by test_host_ip_items
    if net.version == 6 and net.network_address.ipv4_mapped is not None and net.prefixlen >= 96:
        return    # a mapped network is compared as IPv4 (see test_host_ip_items)
    want = OK if client in net else FAIL
    assert m(f"<; {net}", "host", None, address=str(client)) is want
