# SPDX-License-Identifier: GPL-3.0-or-later
"""SRS through real Postfix: a forwarded message leaves with an SRS0 sender (chgfrom), and the
bounce sent back to that address reaches the original sender (recipient edits).

Postfix forwards list@fwd.example to bob@other.example (virtual_alias_maps); the relay
sink plays the other domain. The bounce is a DSN (`MAIL FROM:<>`) to the SRS0 address, as
the other domain's MX would send it, through the same Postfix and milter.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aclmilter.checks import srs
from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import postfix_instance, simple_message, world_traversable_dir
from tests.harness.sink import Sink
from tests.unit.test_srs import POLICY as UNIT_POLICY

pytestmark = pytest.mark.integration

# The unit tests' policy: bounces to valid SRS0 addresses go back, invalid ones get 550,
# mail for list@fwd.example is forwarded with control = srs_forward/fwd.example.
POLICY = UNIT_POLICY


def test_forward_with_srs_and_bounce_back(tmp_path: Path) -> None:
    work = world_traversable_dir("srs-e2e-")
    policy = work / "srs.yaml"
    policy.write_text(POLICY)
    # fwd.example is a virtual alias domain, as on a real forwarding host. Postfix refuses
    # unknown recipients there before the milter sees them, so SRS0 local parts are listed
    # (docs/srs.md); the milter's recipient edit then replaces the SRS0 recipient.
    srs0 = work / "srs0.regexp"
    srs0.write_text("/^SRS0=.*@fwd\\.example$/ postmaster@fwd.example\n")
    srs0.chmod(0o644)
    extra = {"virtual_alias_domains": "fwd.example",
             "virtual_alias_maps": f"inline:{{ list@fwd.example=bob@other.example }}, regexp:{srs0}"}
    with Sink() as sink, AclMilterd(policy, workdir=work) as milter:
        with postfix_instance(sink.port, milter=milter.postfix_spec, extra_main=extra) as pf:
            r = pf.send("alice@orig.example", ["list@fwd.example"],
                        simple_message("alice@orig.example", "list@fwd.example", subject="to the list"))
            assert r.accepted, r
            forwarded = sink.wait_for_rcpt("bob@other.example")
            sender = forwarded.mail_from
            # Exim's native format, made with the first secret, at the forwarding domain
            now = time.time()
            assert sender in {srs.encode("new-secret", "alice@orig.example", "fwd.example", t)
                              for t in (now, now - srs.DAY)}, sender
            assert sender.startswith("SRS0=") and sender.endswith("=orig.example=alice@fwd.example")

            # The other domain bounces it: a DSN to the SRS0 address comes back to us.
            sink.clear()
            dsn = simple_message("MAILER-DAEMON@other.example", sender, subject="Undelivered Mail")
            r = pf.send("", [sender], dsn)
            assert r.rcpt[sender][0] == 250 and r.accepted, r
            bounce = sink.wait_for_rcpt("alice@orig.example")
            assert bounce.mail_from in ("", "<>") and bounce.rcpt_tos == ("alice@orig.example",)
            assert not any("postmaster@fwd.example" in d.rcpt_tos for d in sink.deliveries)
            milter.wait_log(r"bounce for alice@orig\.example")

            # A forged SRS0 address (wrong secret) is refused at RCPT, nothing is delivered.
            forged = srs.encode("guessed", "victim@orig.example", "fwd.example", time.time())
            r = pf.send("", [forged], dsn)
            assert r.rcpt[forged][0] == 550 and not r.accepted, r
            # An address made with the previous secret still decodes (rotation).
            old = srs.encode("old-secret", "carol@orig.example", "fwd.example", time.time())
            r = pf.send("", [old], dsn)
            assert r.accepted, r
            sink.wait_for_rcpt("carol@orig.example")
            assert milter.proc.poll() is None
