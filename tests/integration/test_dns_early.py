# SPDX-License-Identifier: GPL-3.0-or-later
"""Early, parallel DNS lookups (issue 23) give exactly the results of asking in sequence —
including a SERVFAIL and a timeout in the middle of the SPF include chain, a DKIM key and a
DMARC record that time out — ask the same questions, overlap them, and leave no task behind.

Real DNS on the wire: tests/harness/delaying_dns.py on loopback, which answers late, counts
queries and records how many it held unanswered at once (no timing is asserted).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from aclmilter.clients.dns_early import EarlyLookups
from aclmilter.runtime import Runtime
from aclmilter.session import Session
from tests.fixtures.dmarc.ctxhelp import PSL, message, sign, split_message
from tests.harness.delaying_dns import ZONE, DelayingDns

pytestmark = pytest.mark.integration

_TIMEOUT_DETAIL = re.compile(r"(DNS timeout for [^/\s]+/\w+)[^\";]*")

POLICY = """
settings:
  primary_hostname: mx.test.invalid
  authserv_id: mx.test.invalid
  dmarc_tld_file: {psl}
  dns: {{nameservers: ["{ns}"], timeout: 0.4, lifetime: 0.4, budget: 2, early: {early}}}
acl:
  data:
    - warn:
        spf: pass
        add_header: "X-SPF: pass"
    - warn:
        dmarc_status: accept
        add_header: "X-DMARC: accept"
    - accept
"""

# (sender domain label, DKIM selector, From domain label) -> what each exercises
CASES = [
    ("m{n}", "sel1", "m{n}"),              # everything found: spf pass, dkim pass, dmarc pass
    ("sf{n}", "sel1", "sf{n}"),            # SERVFAIL in the SPF include chain: spf temperror
    ("to{n}", "sel1", "to{n}"),            # an include never answered: spf temperror (timeout)
    ("m{n}", "silent", "m{n}"),            # the DKIM key times out: dkim temperror
    ("m{n}", "sel1", "silent.m{n}"),       # the DMARC record times out
]


def _messages() -> list[tuple[str, bytes]]:
    """(sender domain, signed message) per case, signed once so both runs see the same bytes."""
    out = []
    for n, case in enumerate(CASES):
        sender, selector, author = (x.format(n=n) for x in case)
        domain = f"{sender}.{ZONE}"
        out.append((domain, sign(message(from_=f"Alice <alice@{author}.{ZONE}>"), domain=domain,
                                 selector=selector)))
    return out


def _run(rt: Runtime, early: bool, n: int, domain: str, raw: bytes) -> tuple[dict, list, list]:
    s = Session(rt)
    assert bool(s.snapshot.needs.early) is early
    headers, body = split_message(raw)
    s.connect("mx.sender.example", "inet", "192.0.2.25", 4000, {})
    s.helo("mx.sender.example", {})
    s.mail(f"<alice@{domain}>", [], {})
    s.rcpt("<bob@ours.example>", [], {})
    s.data({})
    for name, value in headers:
        s.header(name, value)
    s.eoh()
    s.body(body)
    eom = s.eom({"i": f"Q{n}"})
    record = s.log_record()
    outcome = {k: v for k, v in record.items() if k not in ("queue_id", "elapsed_ms", "time")}
    # a timeout's detail text carries the time it took (dnspython's words): not a result
    adds = [(a.name, _TIMEOUT_DETAIL.sub(r"\1", a.value)) for a in eom.edits.header_adds]
    s.close()
    return outcome, adds, [eom.response.action]


def _policy(tmp_path: Path, dns: DelayingDns, early: bool = True) -> Runtime:
    path = tmp_path / f"auth-{early}.yaml"
    path.write_text(POLICY.format(psl=PSL, ns=dns.nameserver, early=str(early).lower()))
    rt = Runtime(path)
    rt.load()
    return rt


def test_early_lookups_give_the_sequential_results(tmp_path: Path) -> None:
    with DelayingDns(delay=0.1) as dns:
        results = {}
        msgs = _messages()
        for early in (False, True):
            rt = _policy(tmp_path, dns, early)   # a fresh runtime: a cold DNS cache each time
            dns.reset()
            out = [_run(rt, early, n, *m) for n, m in enumerate(msgs)]
            runner = EarlyLookups.of(rt.current().services.get("dns"))
            results[early] = (out, Counter(dns.queries), dns.max_outstanding)
            # nothing of any message is left running: no pending lookup, no asyncio task
            assert runner.pending() == 0
            assert runner.tasks() == 0
            rt.current().services.get("dns").close()
        seq, par = results[False], results[True]
        assert par[0] == seq[0]
        words = [o[0]["checks"] for o in seq[0]]
        assert words[0] == {"spf": "pass", "dkim": "pass", "dmarc_author": "fromdomain", "dmarc": "pass"}
        assert words[1]["spf"] == words[2]["spf"] == "temperror"     # SERVFAIL / timeout mid-chain
        assert words[3]["dkim"] == "temperror"
        assert words[4]["dmarc"] == "temperror"
        # the same questions, each asked as often as in sequence
        assert par[1] == seq[1]
        # in sequence one question at a time; early, independent ones overlap
        assert seq[2] == 1
        assert par[2] >= 3


def test_abort_mid_flight_leaves_nothing_running(tmp_path: Path) -> None:
    with DelayingDns(delay=0.1) as dns:
        rt = _policy(tmp_path, dns)
        s = Session(rt)
        s.connect("mx.sender.example", "inet", "192.0.2.25", 4000, {})
        s.helo("mx.sender.example", {})
        s.mail(f"<alice@to1.{ZONE}>", [], {})
        s.header("DKIM-Signature", f"v=1; a=rsa-sha256; d=silent.{ZONE}; s=silent; b=AAAA; bh=AAAA")
        s.header("From", f"Alice <alice@silent.{ZONE}>")
        runner = EarlyLookups.of(rt.current().services.get("dns"))
        assert runner.pending() >= 2           # the lookups are really in flight
        s.abort()
        assert runner.pending() == 0
        assert runner.tasks() == 0
        s.close()
        # closing the client (reload, shutdown) ends the loop thread; a later message starts none
        assert runner.running()
        rt.current().services.get("dns").close()
        assert not runner.running()
        s.connect("mx.sender.example", "inet", "192.0.2.25", 4000, {})
        s.mail(f"<alice@m9.{ZONE}>", [], {})
        assert runner.pending() == 0
        s.close()


LISTS_POLICY = """
settings:
  primary_hostname: mx.test.invalid
  dns: {{nameservers: ["{ns}"], timeout: 0.4, lifetime: 0.4, budget: 2, early: {early}}}
acl:
  rcpt:
    - deny:
        dnslists: "l1.bl.{zone} : +defer_unknown : l2.bl.{zone}=127.0.0.2 : servfail.bl.{zone} : l3.bl.{zone}"
        message: "550 listed at $dnslist_domain ($dnslist_value) $dnslist_text"
    - accept
"""
# client address -> the lists that have it (the A answer 127.0.0.2, or 127.0.0.9 in l2, which
# l2's restriction =127.0.0.2 does not accept)
LISTED = {"192.0.2.1": ["l1"], "192.0.2.2": ["l2", "l3"], "192.0.2.3": ["l3"], "192.0.2.4": []}


def _a_records() -> dict[str, list[str]]:
    records = {}
    for ip, lists in LISTED.items():
        rev = ".".join(reversed(ip.split(".")))
        for name in lists:
            records[f"{rev}.{name}.bl.{ZONE}"] = ["127.0.0.2"]
    records[f"3.2.0.192.l2.bl.{ZONE}"] = ["127.0.0.9"]
    return records


def _rcpt_replies(rt: Runtime) -> list[tuple[str, str]]:
    out = []
    for ip in LISTED:
        s = Session(rt)
        s.connect("client.example", "inet", ip, 4000, {})
        s.helo("client.example", {})
        s.mail("<a@example.org>", [], {})
        r = s.rcpt("<b@ours.example>", [], {})
        out.append((ip, f"{r.action.name} {r.reply}"))
        s.close()
    return out


def test_dns_lists_of_a_statement_asked_together_give_the_sequential_results(tmp_path: Path) -> None:
    with DelayingDns(delay=0.1, a_records=_a_records()) as dns:
        results = {}
        for early in (False, True):
            path = tmp_path / f"lists-{early}.yaml"
            path.write_text(LISTS_POLICY.format(ns=dns.nameserver, early=str(early).lower(), zone=ZONE))
            rt = Runtime(path)
            rt.load()
            dns.reset()
            replies = _rcpt_replies(rt)
            client = rt.current().services.get("dns")
            runner = EarlyLookups.of(client)
            results[early] = (replies, set(dns.queries), dns.max_outstanding)
            assert runner.pending() == 0 and runner.tasks() == 0      # nothing outlives the condition
            client.close()
        seq, par = results[False], results[True]
        assert par[0] == seq[0]
        words = dict(seq[0])
        assert "l1.bl" in words["192.0.2.1"]
        # 192.0.2.2: l2's answer 127.0.0.2 matches; 192.0.2.3: l2 has it only as 127.0.0.9 (the
        # restriction refuses), then the SERVFAIL list under +defer_unknown defers before l3
        assert "l2.bl" in words["192.0.2.2"]
        assert words["192.0.2.3"].split()[0] == words["192.0.2.4"].split()[0] != words["192.0.2.1"].split()[0]
        # every question of the walk was asked; together they overlap, one at a time they do not
        assert seq[1] <= par[1]
        assert seq[2] == 1
        assert par[2] >= 3


class _RunnerThatFailsAfterOne(EarlyLookups):
    """Starts the first lookup, then fails as a runner that cannot start its thread would."""

    def start(self, owner, name, rdtype, then=None):  # type: ignore[no-untyped-def]
        if owner.keys:
            raise RuntimeError("can't start new thread")
        return super().start(owner, name, rdtype, then)


def test_dns_lists_fall_back_to_one_by_one_when_lookups_cannot_start(tmp_path: Path) -> None:
    with DelayingDns(delay=0.1, a_records=_a_records()) as dns:
        path = tmp_path / "lists.yaml"
        path.write_text(LISTS_POLICY.format(ns=dns.nameserver, early="true", zone=ZONE))
        rt = Runtime(path)
        rt.load()
        client = rt.current().services.get("dns")
        runner = client.early = _RunnerThatFailsAfterOne(client)
        replies = dict(_rcpt_replies(rt))
        # the walk asked one list after the other: the same answers as ever
        assert "l1.bl" in replies["192.0.2.1"] and "l2.bl" in replies["192.0.2.2"]
        assert replies["192.0.2.3"].startswith("TEMPFAIL") and replies["192.0.2.4"].startswith("TEMPFAIL")
        # the lookup that did start was cancelled with the condition: nothing left running
        assert runner.pending() == 0 and runner.tasks() == 0
        client.close()
