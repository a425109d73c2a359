# SPDX-License-Identifier: GPL-3.0-or-later
"""SPF end to end: Postfix -> aclmilter serve (DNS from Knot) -> sink.

Postfix's client is 127.0.0.1, so `loop.spf.test` (ip4:127.0.0.0/8) passes and
`strict.spf.test` (ip4:192.0.2.0/24 only) fails.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import postfix_instance, world_traversable_dir
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

POLICY = """
settings:
  primary_hostname: mx.test.invalid
  dns: {{nameservers: ["{ns}"], timeout: 2, lifetime: 4, budget: 10}}
acl:
  mail:
    - deny:
        spf: fail
        message: "$sender_host_address is not allowed to send mail from $sender_address_domain: $spf_smtp_comment"
    - warn:
        spf: "*"
        add_header: ":at_start:$spf_received"
    - accept: {{}}
"""

MESSAGE = "From: <a@loop.spf.test>\r\nTo: <bob@example.test>\r\nSubject: spf e2e\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def world(knot_dns) -> Iterator[tuple[object, Sink]]:
    work = world_traversable_dir("spf-e2e-")
    policy = work / "spf.yaml"
    policy.write_text(POLICY.format(ns=knot_dns.nameserver))
    with Sink() as sink, AclMilterd(policy, workdir=work) as milter:
        with postfix_instance(sink.port, milter=milter.postfix_spec) as pf:
            yield pf, sink


def test_spf_fail_is_rejected_at_mail_with_the_expanded_message(world):
    pf, sink = world
    sink.clear()
    r = pf.send("bob@strict.spf.test", ["bob@example.test"], MESSAGE)
    assert r.mail is not None and r.mail[0] == 550, r.mail
    assert ("127.0.0.1 is not allowed to send mail from strict.spf.test: Please see "
            "http://www.open-spf.org/Why?id=bob@strict.spf.test&ip=127.0.0.1") in r.mail[1]
    assert sink.count == 0


def test_spf_pass_gets_received_spf_at_the_very_top(world):
    pf, sink = world
    sink.clear()
    r = pf.send("alice@loop.spf.test", ["bob@example.test"], MESSAGE)
    assert r.data is not None and r.data[0] == 250, r
    [d] = sink.wait_for(1)
    names = d.header_names()
    assert names[0] == "Received-SPF", names
    value = " ".join(d.headers("Received-SPF")[0].split())
    assert value.startswith("pass (mx.test.invalid: domain of alice@loop.spf.test designates 127.0.0.1 "
                            "as permitted sender)")
    assert "client-ip=127.0.0.1;" in value and "identity=mailfrom;" in value
