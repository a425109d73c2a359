# SPDX-License-Identifier: GPL-3.0-or-later
"""The DNS client against real Knot: answer shapes, negative answers, TCP fallback, IDN, deadlines."""

from __future__ import annotations

import time

import dns.flags
import dns.message
import dns.query
import pytest

from aclmilter.clients.dns import DnsClient, DnsTempError, Status, TempReason, parse_dns_settings
from aclmilter.errors import LookupDefer

pytestmark = pytest.mark.integration


@pytest.fixture
def client(knot_dns):
    return DnsClient.from_settings(parse_dns_settings(knot_dns.settings()))


def test_lookup_shapes(client):
    assert client.lookup("strict.spf.test", "TXT") == ["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all"]
    assert client.lookup("mx.spf.test", "MX") == ["10 mail.mx.spf.test"]
    assert client.lookup("mail.mx.spf.test", "A") == ["192.0.2.25"]
    assert client.lookup("ns.spf.test", "AAAA") == []                 # NODATA
    assert client.lookup("nothing.spf.test", "A") == []               # NXDOMAIN
    assert client.lookup("www.outside.invalid", "A") == []            # local root: NXDOMAIN


def test_typed_answers_and_negative_ttl(client):
    nx = client.query("nothing.spf.test", "TXT")
    assert nx.status is Status.NXDOMAIN and nx.ttl == 60             # min(SOA TTL, SOA minimum)
    nodata = client.query("nospf.spf.test", "MX")
    assert nodata.status is Status.NODATA
    found = client.query("mx.spf.test", "MX")
    assert found.status is Status.FOUND and found.values == ((10, "mail.mx.spf.test"),) and found.ttl == 300
    assert client.query("a..b", "A").status is Status.BADNAME


def test_answers_come_from_the_cache(client):
    first = client.query("strict.spf.test", "TXT")
    assert client.query("STRICT.spf.test.", "TXT") is first           # same key, no new query
    assert client.query("nothing.spf.test", "A") is client.query("nothing.spf.test", "A")


def test_truncated_udp_answer_is_fetched_over_tcp(client, knot_dns):
    udp = dns.query.udp(dns.message.make_query("big.spf.test", "TXT", use_edns=0, payload=1232),
                        "127.0.0.1", timeout=2, port=knot_dns.port)
    assert udp.flags & dns.flags.TC                                  # the premise: UDP cannot carry it
    records = client.txt("big.spf.test")
    assert len(records) == 46 and sum(map(len, records)) > 10_000
    assert b"v=spf1 ip4:192.0.2.0/24 -all" in records


def test_idn_is_queried_as_a_label(client):
    assert client.lookup("bücher.spf.test", "TXT") == ["v=spf1 ip4:192.0.2.0/24 -all"]
    assert client.query("BÜCHER.spf.test", "TXT").qname == "xn--bcher-kva.spf.test"


def test_ipv6_nameserver_only(knot_dns):
    c = DnsClient.from_settings(parse_dns_settings({"nameservers": [knot_dns.nameserver6]}))
    assert c.lookup("mail.mx.spf.test", "A") == ["192.0.2.25"]


def test_silent_server_is_a_temporary_error(silent_dns):
    c = DnsClient.from_settings(parse_dns_settings(silent_dns.settings(timeout=0.2, lifetime=0.4)))
    with pytest.raises(DnsTempError) as info:
        c.query("strict.spf.test", "TXT")
    assert info.value.reason is TempReason.TIMEOUT
    assert isinstance(info.value, LookupDefer)
    assert silent_dns.queries >= 1


def test_spent_budget_sends_nothing(silent_dns):
    c = DnsClient.from_settings(parse_dns_settings(silent_dns.settings()))
    with pytest.raises(DnsTempError) as info:
        c.query("strict.spf.test", "TXT", deadline=time.monotonic() - 1)
    assert info.value.reason is TempReason.BUDGET
    assert silent_dns.queries == 0
