"""`dnslists` against a real DNS server (Knot, tests/fixtures/dns/zones/dnsbl.test.zone), through
`aclmilter bh` in process; a server that never answers shows the `+..._unknown` handling.
(Agreement with real Exim: the dnslists cases of tests/fixtures/exim/cases.yaml.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from aclmilter.bh import Dialogue, Mta
from aclmilter.runtime import Runtime

pytestmark = pytest.mark.integration

MESSAGE = "dnslist: $dnslist_domain [$dnslist_matched] = $dnslist_value / $dnslist_text"


def replies(tmp_path: Path, nameserver: str, condition: str, client: str = "192.0.2.1",
            sender: str = "a@s.test", verb: str = "deny") -> str:
    """The RCPT reply (without its enhanced status code) for a policy `verb: {dnslists: condition}` (the message shows the variables)."""
    policy = {"settings": {"primary_hostname": "mx.test",
                           "dns": {"nameservers": [nameserver], "timeout": 1, "lifetime": 1, "budget": 2}},
              "acl": {"rcpt": [{verb: {"dnslists": condition, "message": MESSAGE}},
                               {"accept": {"message": "ok " + MESSAGE}}]}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy))
    runtime = Runtime(str(path), monitor=False)
    runtime.load()
    dialogue = Dialogue(runtime, client, Mta.POSTFIX)
    out = dialogue.run(["EHLO c.test", f"MAIL FROM:<{sender}>", "RCPT TO:<u@x.test>", "QUIT"])
    assert len(out) >= 5, out
    return re.sub(r"^(\d{3}) \d\.\d+\.\d+ ", r"\1 ", out[-2]).rstrip()


CASES = [
    # condition, client, expected RCPT reply
    ("bl.dnsbl.test", "192.0.2.1",
     "550 dnslist: bl.dnsbl.test [192.0.2.1] = 127.0.0.2 / 192.0.2.1 is listed, see https://bl.dnsbl.test/"),
    ("bl.dnsbl.test", "192.0.2.7", "250 Ok"),
    ("zen.dnsbl.test=127.0.0.10", "192.0.2.1",
     "550 dnslist: zen.dnsbl.test [192.0.2.1] = 127.0.0.2, 127.0.0.10 / merged entry"),
    ("zen.dnsbl.test=127.0.0.3 : bl.dnsbl.test", "192.0.2.1",
     "550 dnslist: bl.dnsbl.test [192.0.2.1] = 127.0.0.2 / 192.0.2.1 is listed, see https://bl.dnsbl.test/"),
    ("zen.dnsbl.test==127.0.0.2", "192.0.2.1", "250 Ok"),
    ("zen.dnsbl.test==127.0.0.2,127.0.0.10", "192.0.2.1",
     "550 dnslist: zen.dnsbl.test [192.0.2.1] = 127.0.0.2, 127.0.0.10 / merged entry"),
    ("zen.dnsbl.test&0.0.0.4", "192.0.2.7", "550 dnslist: zen.dnsbl.test [192.0.2.7] = 127.0.0.4 /"),
    ("zen.dnsbl.test&0.0.0.8", "192.0.2.1",
     "550 dnslist: zen.dnsbl.test [192.0.2.1] = 127.0.0.2, 127.0.0.10 / merged entry"),
    ("zen.dnsbl.test=&0.0.0.2", "192.0.2.1",
     "550 dnslist: zen.dnsbl.test [192.0.2.1] = 127.0.0.2, 127.0.0.10 / merged entry"),
    ("zen.dnsbl.test=&0.0.0.8", "192.0.2.1", "250 Ok"),
    ("zen.dnsbl.test!=127.0.0.2", "192.0.2.1", "250 Ok"),
    ("zen.dnsbl.test!==127.0.0.2", "192.0.2.1",
     "550 dnslist: zen.dnsbl.test [192.0.2.1] = 127.0.0.2, 127.0.0.10 / merged entry"),
    ("zen.dnsbl.test!&0.0.0.1", "192.0.2.7", "550 dnslist: zen.dnsbl.test [192.0.2.7] = 127.0.0.4 /"),
    ("sbl.dnsbl.test,zen.dnsbl.test=127.0.0.10", "192.0.2.1",
     "550 dnslist: sbl.dnsbl.test [192.0.2.1] = 127.0.0.2 / sbl says no"),
    ("sbl.dnsbl.test,zen.dnsbl.test=127.0.0.4", "192.0.2.1", "250 Ok"),
    ("lost.dnsbl.test", "192.0.2.1", "250 Ok"),
    ("dbl.dnsbl.test/$sender_address_domain", "192.0.2.7", "250 Ok"),
    ("dbl.dnsbl.test/<;192.0.2.7;evil.example", "192.0.2.7",
     "550 dnslist: dbl.dnsbl.test [evil.example] = 127.0.1.2 / evil domain"),
    ("bl.dnsbl.test/192.0.2.9::192.0.2.1", "192.0.2.7",
     "550 dnslist: bl.dnsbl.test [192.0.2.1] = 127.0.0.2 / 192.0.2.1 is listed, see https://bl.dnsbl.test/"),
]


@pytest.mark.parametrize(("condition", "client", "expected"), CASES, ids=[f"{c}@{i}" for c, i, _ in CASES])
def test_dnslists_against_knot(knot_dns, tmp_path: Path, condition: str, client: str,
                               expected: str) -> None:
    assert replies(tmp_path, knot_dns.nameserver, condition, client) == expected


def test_domain_key_from_a_variable(knot_dns, tmp_path: Path) -> None:
    got = replies(tmp_path, knot_dns.nameserver, "dbl.dnsbl.test/$sender_address_domain", "192.0.2.7",
                  sender="a@evil.example")
    assert got == "550 dnslist: dbl.dnsbl.test [evil.example] = 127.0.1.2 / evil domain"


def test_white_list_accepts_before_the_black_list(knot_dns, tmp_path: Path) -> None:
    """`accept dnslists = wl` first: a listed client is accepted although the final deny
    (any client listed at bl) would refuse it; an unlisted one is refused by that deny."""
    policy = {"settings": {"primary_hostname": "mx.test", "dns": {"nameservers": [knot_dns.nameserver]}},
              "acl": {"rcpt": [{"accept": {"dnslists": "wl.dnsbl.test"}},
                               {"deny": {"message": "not white: $dnslist_domain"}}]}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy))
    runtime = Runtime(str(path), monitor=False)
    runtime.load()
    for client, want in (("192.0.2.1", "250 2.1.5 Ok"), ("192.0.2.7", "550 5.7.1 not white: ")):
        out = Dialogue(runtime, client, Mta.POSTFIX).run(["HELO c.test", "MAIL FROM:<a@s.test>",
                                                          "RCPT TO:<u@x.test>", "QUIT"])
        assert out[-2].rstrip() == want.rstrip(), out


@pytest.mark.parametrize(("condition", "expected"), [
    ("bl.dnsbl.test", "250 Ok"),                                      # +exclude_unknown (default)
    ("+include_unknown : bl.dnsbl.test", "550 dnslist: bl.dnsbl.test [192.0.2.1] =  /"),   # listed
    ("+defer_unknown : bl.dnsbl.test", "451 Temporary local problem - please try later"),
    ("+defer_unknown : bl.dnsbl.test/192.0.2.9::192.0.2.1", "451 Temporary local problem - please try later"),
])
def test_dead_dns(silent_dns, tmp_path: Path, condition: str, expected: str) -> None:
    """A list server that never answers: not listed by default, as Exim does."""
    assert replies(tmp_path, silent_dns.nameserver, condition) == expected
