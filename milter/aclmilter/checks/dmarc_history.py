"""The DMARC history file, byte-compatible with OpenDMARC 1.4.2 (opendmarc-import reads it).

`format_record(...)` returns one record (LF line ends, every key present, numeric codes,
`arc 7` / `arc_policy 2 json:[]` since we do no ARC); `append_record(path, data)` appends it
under an exclusive flock, all of it or nothing: a short write (a full disk) is cut back to
where the record began, so the next record never runs into a torn one. The `dmarc_history`
end-of-message hook writes one record per evaluated message.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
from typing import TYPE_CHECKING, Any

from .. import registry
from .arc import ArcResult
from ..hostname import primary_hostname
from .dmarc import DmarcResult, DmarcStatus
from .dmarc_arc import history_lines as arc_history_lines

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

log = logging.getLogger("aclmilter.dmarc.history")

#: ARES codes (opendmarc-ar.h) for the A-R result words.
ARES = {"pass": 0, "softfail": 2, "neutral": 3, "temperror": 4, "permerror": 5, "none": 6, "fail": 7,
        "policy": 8}
#: DMARC_RESULT codes for `action`.
ACTION_REJECT, ACTION_DISCARD, ACTION_ACCEPT, ACTION_TEMPFAIL, ACTION_QUARANTINE = 0, 1, 2, 3, 4

_SAFE = re.compile(r"^[A-Za-z0-9._-]+\Z")
_SAFE_ID = re.compile(r"[^A-Za-z0-9._@+=-]")


class HistoryWriteError(Exception):
    """The history file could not be written (raised only when settings ask to tempfail)."""


def _domain(value: str) -> str:
    """A domain as the importer can store it: one word, no spaces or control characters."""
    value = value.strip().lower().rstrip(".")
    return value if _SAFE.match(value) else re.sub(r"[^a-z0-9._-]", "", value)


def action_code(decision: Any, edits: Any) -> int:
    """What happened to the message, as OpenDMARC's DMARC_RESULT code."""
    result = getattr(getattr(decision, "result", None), "value", "ok")
    if result in ("fail", "drop"):
        return ACTION_REJECT
    if result in ("defer", "error"):
        return ACTION_TEMPFAIL
    if result == "discard":
        return ACTION_DISCARD
    if edits is not None and getattr(edits, "quarantine", None):
        return ACTION_QUARANTINE
    return ACTION_ACCEPT


def format_record(res: DmarcResult, *, job: str, reporter: str, received: int, ipaddr: str,
                  mail_from_domain: str, action: int, arc: ArcResult | None = None) -> bytes:
    """Return one history record exactly as OpenDMARC 1.4.2 writes it (see reference §1.2)."""
    rec = res.record
    lines = [
        f"job {_SAFE_ID.sub('', job) or '(unknown-jobid)'}",
        f"reporter {_domain(reporter) or 'localhost'}",
        f"received {int(received)}",
        f"ipaddr {ipaddr or '127.0.0.1'}",
        f"from {_domain(res.from_domain)}",
        f"mfrom {_domain(mail_from_domain)}",
    ]
    if res.dkim is not None:
        for sig in res.dkim.signatures:
            d, s = _domain(sig.domain), _SAFE_ID.sub("", sig.selector)
            if d and s:   # a `-` selector would vanish from the aggregate reports
                lines.append(f"dkim {d} {s} {ARES.get(sig.status.value, 11)}")
    lines.append(f"spf {ARES.get(res.spf.result, -1) if res.spf is not None else -1}")
    lines.append(f"pdomain {_domain(res.policy_domain or res.from_domain)}")
    lines.append(f"policy {res.history_policy_code}")
    ruas = [u for u in (rec.rua if rec else ()) if " " not in u and "\n" not in u]
    lines.extend(f"rua {u}" for u in ruas) if ruas else lines.append("rua -")
    lines.append(f"pct {rec.pct if rec else 0}")
    lines.append(f"adkim {ord(rec.adkim.value) if rec else 0}")
    lines.append(f"aspf {ord(rec.aspf.value) if rec else 0}")
    lines.append(f"p {rec.p.history_code if rec else 0}")
    lines.append(f"sp {rec.sp.history_code if rec and rec.sp else 0}")
    align = {True: 4, False: 5, None: 0}
    lines.append(f"align_dkim {align[res.dkim_aligned] if rec else 0}")
    lines.append(f"align_spf {align[res.spf_aligned] if rec else 0}")
    lines.extend(arc_history_lines(res, arc))
    lines.append(f"action {action}")
    return ("\n".join(lines) + "\n").encode("ascii", "replace")


def append_record(path: str, data: bytes) -> None:
    """Append `data` as a whole while holding an exclusive flock; raises OSError.

    The record is in the file completely or not at all: if a write fails part way (ENOSPC,
    EDQUOT, EIO after a short write), the file is truncated back to the size it had when the
    lock was taken, still under the lock, and the error is raised.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            start = os.fstat(fd).st_size     # O_APPEND writes land here while we hold the lock
            try:
                view = memoryview(data)
                while view:   # a regular file takes it in one go unless the disk is (nearly) full
                    written = os.write(fd, view)
                    if written <= 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    view = view[written:]
            except OSError:
                _cut_back(fd, start, path)
                raise
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _cut_back(fd: int, size: int, path: str) -> None:
    """Remove a partly written record (truncating frees space, so it works on a full disk)."""
    try:
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, size)
    except OSError as exc:   # nothing more we can do; the importer will report the torn record
        log.error("DMARC history file %s: could not remove a partial record: %s", path, exc.strerror or exc)


def should_record(res: DmarcResult, record_all: bool) -> bool:
    """Written for every evaluated message with a From domain; `norecord` only if asked."""
    if res.status in (DmarcStatus.OFF, DmarcStatus.NOFROM):
        return False
    if res.status is DmarcStatus.NORECORD:
        return record_all and res.result == "none"
    return True


def job_id(ctx: "EvalContext") -> str:
    """The MTA queue id; else a random id (unique per reporter and second is all import needs)."""
    qid = ctx.txn.queue_id if ctx.txn else ""
    return qid or f"aclm{ctx.services.rng.getrandbits(48):012x}"


@registry.eom_hook("dmarc_history", phase="after_data", order=50,
                   wanted=lambda policy: bool(policy.settings.get("dmarc_history_file")))
def history_hook(ctx: "EvalContext", decision: Any) -> None:
    """Append this message's record to settings.dmarc_history_file (if DMARC ran).

    An unwritable file is logged; with dmarc_history_failure=tempfail it raises, which the
    session turns into its internal-error outcome (tempfail by default).
    """
    path = ctx.setting("dmarc_history_file")
    if not path or ctx.txn is None or ctx.mode.simulate or not ctx.has_result("dmarc"):
        return
    res: DmarcResult = ctx.result("dmarc")
    if not should_record(res, bool(ctx.setting("dmarc_history_all"))):
        return
    sender = ctx.txn.sender
    data = format_record(res, job=job_id(ctx), reporter=primary_hostname(ctx),
                         received=int(ctx.services.clock()), ipaddr=ctx.conn.client.address,
                         mail_from_domain=sender.rpartition("@")[2] if sender else "",
                         action=action_code(decision, ctx.txn.edits), arc=ctx.result("arc"))
    try:
        append_record(str(path), data)
    except OSError as exc:
        log.error("DMARC history file %s not written: %s", path, exc.strerror or exc)
        ctx.log_lines.append(f"DMARC history file not written: {exc.strerror or exc}")
        if ctx.setting("dmarc_history_failure") == "tempfail":
            raise HistoryWriteError(str(exc)) from exc
