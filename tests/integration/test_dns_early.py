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
