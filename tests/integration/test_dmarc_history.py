# SPDX-License-Identifier: GPL-3.0-or-later
"""The history file we write is imported by Debian's real opendmarc-import into a real
MariaDB, and opendmarc-reports --test turns it into an aggregate report."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from aiosmtpd.controller import Controller

from aclmilter.actions import Decision
from aclmilter.checks.dmarc_history import HistoryWriteError, history_hook
from aclmilter.outcome import Result
from tests.fixtures.dmarc.ctxhelp import KEY_THIRD, make_ctx, message, settings_for, sign
from tests.harness.procs import free_port, require_binary

import pytest

pytestmark = pytest.mark.integration

ACCEPT = Decision(Result.OK)
REJECT = Decision(Result.FAIL)


def _record(knot, path: Path, raw: bytes, *, decision=ACCEPT, queue_id="Q1", **kw) -> None:
    settings = settings_for(knot.settings(), dmarc_history_file=str(path), **kw.pop("settings", {}))
    ctx = make_ctx(raw, settings=settings, queue_id=queue_id, **kw)
    ctx.check("dmarc")
    history_hook(ctx, decision)


def test_record_layout_matches_opendmarc(knot_dns, tmp_path):
    hist = tmp_path / "history"
    raw = sign(sign(message()), domain="third.dmarcx", key=KEY_THIRD)
    _record(knot_dns, hist, raw, client="192.0.2.1")
    text = hist.read_bytes()
    assert b"\r" not in text and text.endswith(b"\n")
    assert text.decode().split("\n") == [
        "job Q1", "reporter mx.test.invalid", "received 1795272616", "ipaddr 192.0.2.1",
        "from pass.dmarcx", "mfrom pass.dmarcx", "dkim third.dmarcx sel1 0", "dkim pass.dmarcx sel1 0",
        "spf 0", "pdomain pass.dmarcx", "policy 15", "rua mailto:agg@pass.dmarcx",
        "rua mailto:agg2@ops.dmarcx!10m", "pct 100", "adkim 114", "aspf 114", "p 114", "sp 0",
        "align_dkim 4", "align_spf 4", "arc 7", "arc_policy 2 json:[]", "action 2", ""]


def test_null_sender_and_no_record(knot_dns, tmp_path):
    hist = tmp_path / "history"
    _record(knot_dns, hist, message(from_="a@norec.dmarcx"), sender="")
    assert not hist.exists()        # no record: not written unless asked (RecordAllMessages)
    _record(knot_dns, hist, message(from_="a@norec.dmarcx"), sender="", settings={"dmarc_history_all": True})
    lines = hist.read_text().split("\n")
    assert "mfrom " in lines and "policy 14" in lines and "rua -" in lines and "pct 0" in lines


def test_unwritable_file_does_not_block_unless_asked(knot_dns, tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "history"
    _record(knot_dns, missing, message())            # logged, no exception
    with pytest.raises(HistoryWriteError):
        _record(knot_dns, missing, message(), settings={"dmarc_history_failure": "tempfail"})


def _import(db, path: Path) -> subprocess.CompletedProcess:
    exe = require_binary("opendmarc-import")
    return subprocess.run([exe, "--verbose", *db.db_args(), f"--input={path}"], capture_output=True,
                          timeout=60, text=True)


class _Sink:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd API
        self.messages.append(envelope)
        return "250 OK"


def test_opendmarc_import_and_reports(knot_dns, opendmarc_db, tmp_path):
    hist = tmp_path / "history"
    now = lambda: time.time() - 60   # noqa: E731 - reports only select messages in the past
    # 1: DKIM pass (two signatures), SPF pass   2: reject, rejected   3: sp quarantine from org
    _record(knot_dns, hist, sign(sign(message()), domain="third.dmarcx", key=KEY_THIRD),
            client="192.0.2.1", queue_id="Q1", clock=now)
    _record(knot_dns, hist, message(), decision=REJECT, client="198.51.100.7", queue_id="Q2", clock=now)
    _record(knot_dns, hist, message(from_="a@sub.org.dmarcx"), sender="x@elsewhere.dmarcx",
            client="2001:db8::25", queue_id="Q3", clock=now)
    proc = _import(opendmarc_db, hist)
    assert proc.returncode == 0
    bad = [ln for ln in proc.stderr.splitlines() if "failed" in ln or "unknown key" in ln or "uninitialized" in ln]
    assert not bad, proc.stderr
    rows = opendmarc_db.sql(
        "SELECT m.jobid, m.policy, m.disp, m.spf, m.align_dkim, m.align_spf, m.sigcount, m.arc, "
        "m.arc_policy, i.addr, f.name, e.name, p.name FROM messages m JOIN ipaddr i ON i.id = m.ip "
        "JOIN domains f ON f.id = m.from_domain JOIN domains e ON e.id = m.env_domain "
        "JOIN domains p ON p.id = m.policy_domain ORDER BY m.jobid", "opendmarc")
    assert rows == [
        ["Q1", "15", "2", "0", "4", "4", "2", "7", "2", "192.0.2.1", "pass.dmarcx", "pass.dmarcx", "pass.dmarcx"],
        ["Q2", "16", "0", "7", "5", "5", "0", "7", "2", "198.51.100.7", "pass.dmarcx", "pass.dmarcx", "pass.dmarcx"],
        ["Q3", "17", "2", "6", "5", "5", "0", "7", "2", "2001:db8::25", "sub.org.dmarcx", "elsewhere.dmarcx",
         "org.dmarcx"],
    ]
    sigs = opendmarc_db.sql("SELECT d.name, s.name, g.pass FROM signatures g JOIN domains d ON d.id = g.domain "
                            "JOIN selectors s ON s.id = g.selector ORDER BY d.name", "opendmarc")
    assert sigs == [["pass.dmarcx", "sel1", "0"], ["third.dmarcx", "sel1", "0"]]
    req = opendmarc_db.sql("SELECT d.name, r.repuri, r.adkim, r.aspf, r.policy, r.spolicy, r.pct FROM requests r "
                           "JOIN domains d ON d.id = r.domain ORDER BY d.name", "opendmarc")
    assert ["pass.dmarcx", "mailto:agg@pass.dmarcx,mailto:agg2@ops.dmarcx!10m", "114", "114", "114", "0", "100"] in req
    assert ["sub.org.dmarcx", "", "114", "114", "114", "113", "100"] in req

    # Re-importing the same file must be refused row by row (unique reporter/date/job).
    again = _import(opendmarc_db, hist)
    assert "Duplicate entry" in again.stderr

    # opendmarc-reports --test writes the aggregate XML and talks SMTP to our sink only.
    handler = _Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        out = subprocess.run(
            [require_binary("opendmarc-reports"), "--test", "--verbose", "--verbose", *opendmarc_db.db_args(),
             "--interval=86400", "--domain=pass.dmarcx", "--smtp-server=127.0.0.1", f"--smtp-port={port}",
             "--report-email=dmarc@mx.test.invalid", "--report-org=mx.test.invalid", "--utc"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    finally:
        controller.stop()
    assert out.returncode == 0, out.stderr
    assert "would email pass.dmarcx report for 2 records to agg@pass.dmarcx" in out.stdout + out.stderr
    xml_files = [p for p in os.listdir(tmp_path) if p.endswith(".xml")]
    assert len(xml_files) == 1 and xml_files[0].startswith("mx.test.invalid!pass.dmarcx!")
    xml = (tmp_path / xml_files[0]).read_text()
    assert "<source_ip>192.0.2.1</source_ip>" in xml and "<source_ip>198.51.100.7</source_ip>" in xml
    assert "<disposition>reject</disposition>" in xml and "<selector>sel1</selector>" in xml
    assert handler.messages == []    # --test never sends
