# SPDX-License-Identifier: GPL-3.0-or-later
"""History records are atomic on a full disk (issue 24, point 2).

A 16 KiB tmpfs, mounted by the test and unmounted afterwards, fills up while records of
varying length are appended: the write that crosses the end is short, then ENOSPC. The file
must then hold only whole records (the partial one cut back under the lock), and Debian's
opendmarc-import must import every one of them into MariaDB.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from aclmilter.actions import Decision
from aclmilter.checks.dmarc_history import HistoryWriteError, history_hook
from aclmilter.outcome import Result
from tests.fixtures.dmarc.ctxhelp import make_ctx, message, settings_for
from tests.harness.procs import require_binary

pytestmark = pytest.mark.integration

FS_SIZE = "16k"


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs of our own (needs root, as CI runs the suite)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    mount, umount = require_binary("mount"), require_binary("umount")
    res = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0755", "tmpfs", str(mnt)],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the test needs root): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run([umount, str(mnt)], capture_output=True, timeout=30)


def _append(knot, path: Path, i: int) -> None:
    settings = settings_for(knot.settings(), dmarc_history_file=str(path), dmarc_history_failure="tempfail")
    # Job ids of varying length move record boundaries across the filesystem's page ends.
    ctx = make_ctx(message(), settings=settings, queue_id=f"Q{i:04d}" + "x" * (i * 7 % 41),
                   client=f"192.0.2.{i % 250 + 1}", clock=lambda: time.time() - 60)
    ctx.check("dmarc")
    history_hook(ctx, Decision(Result.OK))


def _records(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    for line in text.split("\n")[:-1]:
        if line.startswith("job "):
            out.append([])
        assert out, f"the file does not start with a job line: {line!r}"
        out[-1].append(line)
    return out


def test_records_stay_whole_when_the_disk_fills(knot_dns, tiny_fs, opendmarc_db):
    hist = tiny_fs / "history"
    written: list[int] = []
    failures = 0
    for i in range(400):                      # ~400 bytes each: the 16 KiB fill after ~40
        size_before = hist.stat().st_size if hist.exists() else 0
        try:
            _append(knot_dns, hist, i)
        except HistoryWriteError as exc:
            assert "No space left" in str(exc), exc
            assert hist.stat().st_size == size_before        # cut back to where the record began
            failures += 1
            if failures == 5:
                break
        else:
            written.append(i)
    assert failures == 5 and len(written) > 10
    text = hist.read_text()
    assert text.endswith("\naction 2\n")
    records = _records(text)
    assert [r[0] for r in records] == [f"job Q{i:04d}" + "x" * (i * 7 % 41) for i in written]
    assert all(len(r) == len(records[0]) and r[-1] == "action 2" for r in records)

    copy = Path(opendmarc_db.datadir).parent / "history-from-full-disk"
    copy.write_text(text)
    proc = subprocess.run([require_binary("opendmarc-import"), "--verbose", *opendmarc_db.db_args(),
                           f"--input={copy}"], capture_output=True, timeout=120, text=True)
    assert proc.returncode == 0, proc.stderr
    bad = [ln for ln in proc.stderr.splitlines() if "failed" in ln or "unknown key" in ln or "uninitialized" in ln]
    assert not bad, proc.stderr
    rows = opendmarc_db.sql("SELECT jobid FROM messages ORDER BY id", "opendmarc")
    assert [r[0] for r in rows] == [f"Q{i:04d}" + "x" * (i * 7 % 41) for i in written]
