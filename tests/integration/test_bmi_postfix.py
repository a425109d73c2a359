# SPDX-License-Identifier: GPL-3.0-or-later
"""BMI end to end: Postfix -> aclmilter serve -> real spamd, recipient edits seen at the sink."""

from __future__ import annotations

import base64
from typing import Iterator

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import postfix_instance, simple_message, world_traversable_dir
from tests.harness.procs import free_port
from tests.harness.scanners import GTUBE, spamd_server
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

OPTIN_DATA = """\
q@example.com: spam-to-quarantine
d@example.com: drop-spam
"""

POLICY = """
settings:
  primary_hostname: mx.test.example
  bmi:
    scanner: {{type: spamd, address: "{address}", timeout: 30}}
    homogeneous: true
    profiles:
      - {{name: quarantine, optin: spam-to-quarantine, when: spam, verdict: alternate,
          location: quarantine@example.org}}
      - {{name: drop, optin: drop-spam, when: spam, verdict: dont_deliver}}
acl:
  rcpt:
    # only this sender asks for homogeneous transactions
    - defer:
        senders: homogeneous@example.org
        bmi_optin: "${{lookup{{$local_part@$domain}}lsearch{{{optin}}}}}"
        bmi_profile_differs: "true"
        message: "452 4.5.3 Try again later for this recipient"
    - accept:
        domains: example.com
        bmi_optin: "${{lookup{{$local_part@$domain}}lsearch{{{optin}}}}}"
        control: bmi_run
    - accept
  deliver:
    - discard: {{bmi_dont_deliver: "true"}}
    - accept: {{bmi_deliver_alternate: "true", redirect: "$bmi_alt_location"}}
    - accept
"""

SPAM_BODY = f"Cheap watches!\n{GTUBE}\n"
HAM_BODY = "Hi,\n\nthe minutes of Tuesday's meeting are on the wiki.\n\nAlice\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple]:
    work = world_traversable_dir("bmi-e2e-")
    optin = work / "optin"
    optin.write_text(OPTIN_DATA)
    with spamd_server(tmp_path_factory.mktemp("spamd")) as spamd:
        good = work / "bmi.yaml"
        good.write_text(POLICY.format(address=spamd.tcp_address, optin=optin))
        dead = work / "bmi-dead.yaml"
        dead.write_text(POLICY.format(address=f"127.0.0.1:{free_port()}", optin=optin))
        with Sink() as sink, AclMilterd(good, workdir=work) as milter:
            with postfix_instance(sink.port, milter=milter.postfix_spec) as pf:
                yield pf, sink, dead, milter


@pytest.fixture
def sink(world) -> Sink:
    world[1].clear()
    return world[1]


def send(world, rcpts: list[str], body: str, sender: str = "alice@example.org"):
    return world[0].send(sender, rcpts, simple_message(sender, rcpts[0], subject="bmi e2e", body=body))


def verdict_headers(delivery) -> dict[str, str]:
    return {n: base64.b64decode(delivery.header(n)).decode()
            for n in ("X-Brightmail-Verdict", "X-Brightmail-Tracker") if delivery.header(n)}


def test_mixed_optins_give_per_recipient_edits_and_no_headers(world, sink: Sink) -> None:
    r = send(world, ["d@example.com", "q@example.com", "p@example.com"], SPAM_BODY)
    assert r.accepted, r
    [got] = sink.wait_for(1)
    assert sorted(got.rcpt_tos) == ["p@example.com", "quarantine@example.org"]
    assert verdict_headers(got) == {}, "three different verdicts cannot share one copy's headers"
    assert GTUBE.encode() in got.body


def test_same_verdict_for_all_adds_the_headers(world, sink: Sink) -> None:
    r = send(world, ["d@example.com", "q@example.com", "p@example.com"], HAM_BODY)
    assert r.accepted, r
    [got] = sink.wait_for(1)
    assert sorted(got.rcpt_tos) == ["d@example.com", "p@example.com", "q@example.com"]
    h = verdict_headers(got)
    assert h["X-Brightmail-Verdict"] == "v=1; verdict=default; profile=default"
    assert h["X-Brightmail-Tracker"].startswith("v=1; scanner=spamd; ") and "spam=no" in h["X-Brightmail-Tracker"]
    assert "example.com" not in got.header("X-Brightmail-Verdict") + got.header("X-Brightmail-Tracker")


def test_only_dropped_recipients_discards_and_nothing_else_is_lost(world, sink: Sink) -> None:
    dropped = send(world, ["d@example.com"], SPAM_BODY)
    assert dropped.accepted, dropped          # the client was told 250; the verdict dropped it
    kept = send(world, ["p@example.com"], SPAM_BODY)
    assert kept.accepted, kept
    got = sink.wait_for_rcpt("p@example.com")
    assert verdict_headers(got)["X-Brightmail-Verdict"] == "v=1; verdict=default; profile=default"
    assert all("d@example.com" not in d.rcpt_tos for d in sink.deliveries)
    assert "discard" in world[0].maillog().lower()


def test_homogeneous_mode_defers_the_odd_recipient(world, sink: Sink) -> None:
    r = send(world, ["p@example.com", "x@example.com", "d@example.com"], SPAM_BODY,
             sender="homogeneous@example.org")
    assert r.rcpt["p@example.com"][0] == 250 and r.rcpt["x@example.com"][0] == 250
    assert r.rcpt["d@example.com"][0] == 452 and "4.5.3" in r.rcpt["d@example.com"][1]
    assert r.accepted, r
    [got] = sink.wait_for(1)
    assert sorted(got.rcpt_tos) == ["p@example.com", "x@example.com"]
    assert "X-Brightmail-Verdict" in verdict_headers(got)
    # the retry in a transaction of its own gets its own verdict
    retry = send(world, ["d@example.com"], HAM_BODY, sender="homogeneous@example.org")
    assert retry.accepted, retry
    assert sink.wait_for_rcpt("d@example.com")


def test_scanner_down_tempfails_and_the_client_keeps_the_message(world, sink: Sink) -> None:
    pf, _, dead, good = world
    with AclMilterd(dead, workdir=world_traversable_dir("bmi-dead-")) as milter:
        pf.set_milter(milter.postfix_spec)
        try:
            r = send(world, ["d@example.com", "p@example.com"], SPAM_BODY)
            log = milter.log()
        finally:
            pf.set_milter(good.postfix_spec)
    assert r.data is not None and r.data[0] == 451, r
    # the 451 is ours (scanner failure under on_scanner_failure: tempfail), not Postfix's
    # milter_default_action
    assert "scanner failure" in log and "Connection refused" in log
    assert sink.count == 0
