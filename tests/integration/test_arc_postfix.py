# SPDX-License-Identifier: GPL-3.0-or-later
"""ARC end to end: Postfix -> aclmilter serve (Knot DNS) -> sink.

A list-modified, ARC-sealed message from a p=reject domain is accepted because list.arcx
is a trusted sealer (the policy denies `dmarc_status = reject`), leaves with our A-R
(arc=pass, override=trusted_forwarder) and our own ARC set (settings.arc_sign), and the
next hop verifies the two-instance chain. A tampered chain is refused.
"""

from __future__ import annotations

import dkim
import pytest

from tests.fixtures.dmarc.ctxhelp import KEY_SEL1, PSL, message, sign
from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import postfix_instance, world_traversable_dir
from tests.harness.sink import Sink
from tests.integration.test_arc import _ctx, _tamper_ams, through_list

pytestmark = pytest.mark.integration

POLICY = """
settings:
  authserv_id: mx.arcx
  primary_hostname: mx.arcx
  dmarc_tld_file: {psl}
  dns: {{nameservers: ["{ns}"], timeout: 2, lifetime: 4, budget: 10}}
  arc_trusted_sealers: [list.arcx]
  arc_sign: {{domain: mx.arcx, selector: sel1, key_file: {key}}}
acl:
  data:
    - deny:
        dmarc_status: reject
        message: "550 5.7.1 DMARC policy of $dmarc_used_domain (arc $arc_status)"
    - accept:
        add_header: "X-ARC-Seen: $arc_status $arc_domains $arc_oldest_pass"
"""


def test_trusted_list_message_is_accepted_sealed_and_verifiable(knot_dns, tmp_path) -> None:
    work = world_traversable_dir("arc-e2e-")
    key = work / "arc.key"
    key.write_bytes(KEY_SEL1)
    policy = work / "arc.yaml"
    policy.write_text(POLICY.format(psl=PSL, ns=knot_dns.nameserver, key=key))
    listed = through_list(sign(message()))
    with Sink() as sink, AclMilterd(policy, workdir=work) as milter:
        with postfix_instance(sink.port, milter=milter.postfix_spec) as pf:
            r = pf.send("list-bounces@list.arcx", ["bob@example.test"], listed)
            assert r.accepted, r
            [d] = sink.wait_for(1)
            ours = " ".join(d.headers("Authentication-Results")[0].split())
            assert ours.startswith("mx.arcx;") and "arc=pass" in ours
            assert "dmarc=fail (p=reject dis=none override=trusted_forwarder)" in ours
            assert d.header("X-ARC-Seen") == "pass list.arcx 1"
            seals = d.headers("ARC-Seal")
            assert len(seals) == 2 and any("d=mx.arcx" in s and "cv=pass" in s for s in seals)

            # the next hop verifies with the same Knot zone (through the project's resolver)
            cv, results, reason = dkim.arc_verify(d.data, dnsfunc=_knot_txt(knot_dns))
            assert cv == dkim.CV_Pass, reason
            assert sorted(r["instance"] for r in results) == [1, 2]

            r = pf.send("list-bounces@list.arcx", ["bob@example.test"], _tamper_ams(listed))
            assert r.data is not None and r.data[0] == 550 and "arc fail" in r.data[1], r
            assert milter.proc.poll() is None


def _knot_txt(knot):
    dns = _ctx(knot, message()).services.get("dns")

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        found = dns.lookup(name.decode().rstrip("."), "TXT")
        return found[0].encode() if found else None
    return txt
