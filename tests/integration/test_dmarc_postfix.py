# SPDX-License-Identifier: GPL-3.0-or-later
"""DKIM + DMARC end to end: Postfix -> aclmilter serve (Knot DNS) -> sink.

Proves that the header list Postfix hands a milter verifies with dkimpy, that forged
Authentication-Results fields with our authserv-id are removed and ours is on top, that
the seed's `deny dmarc_status = reject` rejects after DATA, and that the history file
written by the daemon is what opendmarc-import reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.fixtures.dmarc.ctxhelp import PSL, message, sign
from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import postfix_instance, world_traversable_dir
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

POLICY = """
settings:
  authserv_id: mx.test.invalid
  primary_hostname: mx.test.invalid
  dmarc_tld_file: {psl}
  dmarc_history_file: {history}
  dns: {{nameservers: ["{ns}"], timeout: 2, lifetime: 4, budget: 10}}
acl:
  data:
    - warn:
        dmarc_status: "!accept"
        log_message: "DMARC DEBUG: '$dmarc_status' for $dmarc_used_domain"
    - deny:
        dmarc_status: reject
        "!authenticated": "*"
        message: "Message from $dmarc_used_domain failed sender's DMARC policy, REJECT"
    - accept: {{}}
"""


@pytest.fixture(scope="module")
def world(knot_dns) -> Iterator[tuple[object, Sink, Path]]:
    work = world_traversable_dir("dmarc-e2e-")
    history = work / "dmarc.dat"
    policy = work / "dmarc.yaml"
    policy.write_text(POLICY.format(psl=PSL, history=history, ns=knot_dns.nameserver))
    with Sink() as sink, AclMilterd(policy, workdir=work) as milter:
        with postfix_instance(sink.port, milter=milter.postfix_spec) as pf:
            yield pf, sink, history


def test_forged_ar_removed_ours_on_top(world):
    pf, sink, _ = world
    sink.clear()
    forged = [("Authentication-Results", "mx.test.invalid; dkim=pass header.d=quar.dmarcx; dmarc=pass "
                                         "header.from=quar.dmarcx"),
              ("Authentication-Results", "elsewhere.invalid; spf=pass smtp.mailfrom=pass.dmarcx")]
    raw = sign(message(extra=forged, subject="folded\r\n\tsubject"), canon=(b"simple", b"simple"))
    r = pf.send("bounce@pass.dmarcx", ["bob@example.test"], raw)
    assert r.data is not None and r.data[0] == 250, r.data
    [d] = sink.wait_for(1)
    ars = d.headers("Authentication-Results")
    assert len(ars) == 2, ars
    ours = " ".join(ars[0].split())
    assert ours.startswith("mx.test.invalid;")
    assert "dkim=pass" in ours and "header.d=pass.dmarcx" in ours
    assert "dmarc=pass (p=reject dis=none) header.from=pass.dmarcx" in ours
    assert ars[1].startswith("elsewhere.invalid;")
    assert not any("header.from=quar.dmarcx" in a for a in ars)
    names = d.header_names()
    assert names.index("Authentication-Results") < names.index("Received")


def test_dmarc_reject_after_data(world):
    pf, sink, history = world
    sink.clear()
    r = pf.send("bounce@pass.dmarcx", ["bob@example.test"], message(subject="unsigned"))
    assert r.data is not None and r.data[0] == 550
    assert "Message from pass.dmarcx failed sender's DMARC policy, REJECT" in r.data[1]
    assert sink.deliveries == []
    records = history.read_text().split("job ")
    last = records[-1].splitlines()
    assert "policy 16" in last and "action 0" in last and "ipaddr 127.0.0.1" in last
