# SPDX-License-Identifier: GPL-3.0-or-later
"""History record details that need no DNS: codes, hostile values, locking writes."""

from __future__ import annotations

import threading

from aclmilter.actions import Decision, Edits
from aclmilter.checks.dkim import DkimResult, DkimSignature, DkimStatus
from aclmilter.checks.dmarc import DmarcResult, DmarcStatus, SpfFacts
from aclmilter.checks.dmarc_history import action_code, append_record, format_record, should_record
from aclmilter.checks.dmarc_record import parse_record
from aclmilter.outcome import Result


def _res(**kw) -> DmarcResult:
    base = dict(status=DmarcStatus.REJECT, result="fail", text="", from_domain="example.com",
                policy_domain="example.com", record=parse_record("v=DMARC1; p=reject; sp=none; aspf=s"),
                spf=SpfFacts("softfail", "example.com", "mfrom"), spf_aligned=False, dkim_aligned=False)
    base.update(kw)
    from aclmilter.checks.dmarc_record import Policy
    base.setdefault("domain_policy", Policy.REJECT)
    return DmarcResult(**base)


def test_codes():
    text = format_record(_res(), job="J1", reporter="mx.example.net", received=1, ipaddr="2001:db8::1",
                         mail_from_domain="", action=0).decode()
    lines = text.splitlines()
    assert lines[:6] == ["job J1", "reporter mx.example.net", "received 1", "ipaddr 2001:db8::1",
                         "from example.com", "mfrom "]
    for want in ("spf 2", "policy 16", "rua -", "pct 100", "adkim 114", "aspf 115", "p 114", "sp 110",
                 "align_dkim 5", "align_spf 5", "arc 7", "arc_policy 2 json:[]", "action 0"):
        assert want in lines


def test_hostile_values_cannot_break_lines():
    dk = DkimResult((DkimSignature("evil.example\nspf 0", "s el\n", "@x", "rsa-sha256", DkimStatus.PASS),))
    text = format_record(_res(dkim=dk), job="J\n2 x", reporter="mx", received=1, ipaddr="192.0.2.1",
                         mail_from_domain="a b\nc", action=2).decode()
    assert all(line.count(" ") >= 1 for line in text.splitlines())
    assert "job J2x" in text and "mfrom abc" in text and "\nspf 0" not in text.replace("spf 2", "")


def test_action_codes_and_when_written():
    edits = Edits()
    assert action_code(Decision(Result.FAIL), edits) == 0
    assert action_code(Decision(Result.DEFER), edits) == 3
    assert action_code(Decision(Result.DISCARD), edits) == 1
    assert action_code(Decision(Result.OK), edits) == 2
    edits.quarantine = "held"
    assert action_code(Decision(Result.OK), edits) == 4
    assert not should_record(_res(status=DmarcStatus.OFF), True)
    assert not should_record(_res(status=DmarcStatus.NORECORD, result="none"), False)
    assert should_record(_res(status=DmarcStatus.NORECORD, result="none"), True)
    assert should_record(_res(status=DmarcStatus.TEMPERROR, result="temperror"), False)


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / "h"
    records = [f"job T{i}\n" + "x" * 5000 + f"\naction {i}\n" for i in range(40)]

    def write(rec: str) -> None:
        append_record(str(path), rec.encode())

    threads = [threading.Thread(target=write, args=(r,)) for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = path.read_text()
    assert sorted(("job " + chunk) for chunk in data.split("job ")[1:]) == sorted(records)
