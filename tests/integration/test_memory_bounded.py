# SPDX-License-Identifier: GPL-3.0-or-later
"""Memory does not grow with the message (issue 24, point 4): a real `aclmilter serve` takes a
5 MB whitespace-heavy, DKIM-signed (relaxed/relaxed) message, verifies it (pass, key from
Knot), sends it to dccifd (the fake records every byte) and its peak RSS grows by less than
MAX_GROWTH. Before the body was streamed this message cost the daemon about 400 MB.

The bound is on memory, measured from /proc (VmHWM reset after a warm-up message), never on time.
"""

from __future__ import annotations

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.bigmail import HEADERS, dkim_signature, make_body, peak, reset_peak, rss
from tests.harness.fake_dccifd import FakeDccifd
from tests.harness.milterclient import MilterClient
from tests.harness.postfix import world_traversable_dir

pytestmark = pytest.mark.integration

MAX_GROWTH = 20 << 20          # bytes; the message itself is 5 MB
BODY_SIZE = 5 << 20

POLICY = """
settings:
  authserv_id: mx.test.invalid
  primary_hostname: mx.test.invalid
  dccifd_address: {dcc}
  dccifd_timeout: 30
  dns: {{nameservers: ["{ns}"], timeout: 2, lifetime: 4, budget: 10}}
acl:
  data:
    - warn:
        dcc: "*"
    - warn:
        add_header: "X-Test-DKIM: $dkim_verify_status $dkim_signers dcc=$dcc_result"
    - accept
"""


def _send(client: MilterClient, body: bytes):
    headers = [dkim_signature(HEADERS, body), *HEADERS]
    client.connect("client.example.org", "4", 4711, "192.0.2.7")
    client.helo("client.example.org")
    return client.message("alice@pass.dmarcx", ["bob@rcpt.invalid"], headers, body)


def test_five_mb_whitespace_heavy_signed_message_keeps_rss_flat(knot_dns):
    work = world_traversable_dir("aclm-memory-")
    with FakeDccifd.unix(work / "dccifd") as fake:
        policy = work / "policy.yaml"
        policy.write_text(POLICY.format(dcc=fake.address, ns=knot_dns.nameserver))
        with AclMilterd(policy, workdir=work) as daemon:
            pid = daemon.pid
            assert pid is not None
            with MilterClient(daemon.client_spec, timeout=120) as client:      # warm-up: imports, key, crypto
                warm = _send(client, make_body("whitespace", 3 << 20))
            assert ("X-Test-DKIM", "pass pass.dmarcx dcc=A") in warm.headers_added(), warm
            body = make_body("whitespace", BODY_SIZE)
            base = rss(pid)
            reset_peak(pid)
            with MilterClient(daemon.client_spec, timeout=120) as client:
                answer = _send(client, body)
            growth = peak(pid) - base
            print(f"RSS {base >> 20} MiB, peak growth {growth / 1048576:.1f} MiB")
    assert ("X-Test-DKIM", "pass pass.dmarcx dcc=A") in answer.headers_added(), answer
    assert fake.requests[-1].raw.endswith(body)          # dccifd got every byte of the body
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth >> 20} MiB for a {BODY_SIZE >> 20} MiB body"
