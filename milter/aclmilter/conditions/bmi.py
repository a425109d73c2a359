# SPDX-License-Identifier: GPL-3.0-or-later
"""Registry entries for BMI-style per-recipient verdicts (Exim's EXPERIMENTAL_BRIGHTMAIL).

- setting `bmi` (scanner, failure outcome, profiles, header names, homogeneous mode)
- `control = bmi_run` (before DATA) marks the message for scanning; without it nothing is scanned
- `bmi_optin = a,b:c` (RCPT) sets the current recipient's opt-in strings
- `bmi_profile_differs` (RCPT) for homogeneous transactions
- DELIVER conditions `bmi_deliver_default`, `bmi_deliver_alternate`, `bmi_dont_deliver`,
  `bmi_rule`, variables `$bmi_base64_verdict`, `$bmi_base64_tracker_verdict`,
  `$bmi_alt_location`, `$bmi_deliver`
- checks `scan` (transaction) and `bmi_verdict` (recipient, needs scan)
- the `after_deliver` hook that adds the verdict headers when all delivered recipients agree
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .. import lazy, registry, services
from ..actions import HeaderAdd, HeaderPosition, HeaderRemove
from ..checks.bmi import (BmiSettings, FailureOutcome, Verdict, VerdictKind, compute_verdict,
                          effective_profile, parse_bmi, parse_optin, parse_rule_list, tracker)
from ..clients.health import watched
from ..context import EvalContext
from ..errors import ExpansionFailed, LookupDefer, SyntaxProblem
from ..outcome import Result
from ..stages import BEFORE_DATA, Stage
from ..state import Recipient

# The scanner protocols load with the first scanner built or message scanned (lazy.py)
if TYPE_CHECKING:  # pragma: no cover
    from ..checks import scan as sc
    from ..checks.scan import Scanner, ScanResult
else:
    sc = lazy.module("aclmilter.checks.scan")

SCANNER_SERVICE = "scanner:bmi"

registry.setting("bmi", parse_bmi, BmiSettings(),
                 "BMI-style verdicts: scanner {type, address, timeout, max_size, command, user}, "
                 "on_scanner_failure, profiles, verdict_header, tracker_header, homogeneous (docs/bmi.md)")


def _settings(ctx: EvalContext) -> BmiSettings:
    value = ctx.setting("bmi")
    return value if isinstance(value, BmiSettings) else BmiSettings()


def _scanner_factory(settings: dict, _services: Any) -> Scanner | None:
    """Build the configured backend once per loaded policy (None when none is configured)."""
    bmi = settings.get("bmi")
    if not isinstance(bmi, BmiSettings) or bmi.scanner is None:
        return None
    return sc.build_scanner(bmi.scanner)


services.register_factory(SCANNER_SERVICE, _scanner_factory)


# ---- marking the message and the recipients -------------------------------------------------
@registry.control("bmi_run", BEFORE_DATA, needs_content=True)
def _bmi_run(ctx: EvalContext, options: str) -> None:
    """Scan this message at end of data (before CONNECT/HELO's transaction exists: every message)."""
    if ctx.txn is not None:
        ctx.txn.controls["bmi_run"] = options
    else:
        ctx.conn.controls.add("bmi_run")


#: a recipient's opt-in strings (`bmi_optin`); () = none given
OPTIN = registry.slot("bmi_optin", scope="recipient", factory=tuple)


@registry.modifier("bmi_optin", Stage.RCPT, parse=parse_optin)
def _bmi_optin(ctx: EvalContext, optin: tuple[str, ...]) -> Result:
    """Set the current recipient's opt-in strings (comma- or colon-separated; replaces earlier ones).

    Returns OK; DEFER when a lookup in its expansion cannot answer now; ERROR when the
    expansion fails."""
    if ctx.rcpt is None:
        raise ExpansionFailed("bmi_optin outside the rcpt ACL")
    OPTIN.put(ctx.rcpt, optin)
    return Result.OK


def parse_flag(text: str) -> bool:
    """The argument of the BMI boolean conditions: true/yes/*/1/on or false/no/0/off."""
    t = text.strip().lower()
    if t in ("true", "yes", "*", "1", "on"):
        return True
    if t in ("false", "no", "0", "off"):
        return False
    raise SyntaxProblem(f"true or false is expected, not {text!r}")


@registry.condition("bmi_profile_differs", Stage.RCPT, parse=parse_flag)
def _bmi_profile_differs(ctx: EvalContext, want: bool) -> Result:
    """True when homogeneous mode is on and this recipient's effective profile (the profile
    rules its opt-ins select) differs from the first accepted recipient's; false otherwise
    (first recipient, or `settings.bmi.homogeneous` off). Returns OK or FAIL, never DEFER
    (no scanner is asked)."""
    bmi = _settings(ctx)
    if ctx.rcpt is None or ctx.txn is None:
        return Result.FAIL if want else Result.OK
    first = next((r for r in ctx.txn.recipients if r.accepted and not r.discarded and r is not ctx.rcpt), None)
    differs = False
    if not bmi.homogeneous:
        ctx.note("bmi", "bmi_profile_differs: settings.bmi.homogeneous is off", "fail")
    elif first is not None:
        mine = effective_profile(OPTIN.on(ctx.rcpt), bmi.profiles)
        theirs = effective_profile(OPTIN.on(first), bmi.profiles)
        differs = mine != theirs
        ctx.note("bmi", f"profile {list(mine)} vs first recipient's {list(theirs)}",
                 "differs" if differs else "same")
    return Result.OK if differs == want else Result.FAIL


# ---- checks ---------------------------------------------------------------------------------
def scan_requested(ctx: EvalContext) -> bool:
    """True if `control = bmi_run` was set for this message (or for the whole connection)."""
    return (ctx.txn is not None and "bmi_run" in ctx.txn.controls) or "bmi_run" in ctx.conn.controls


@registry.check("scan")
def scan_check(ctx: EvalContext) -> ScanResult:
    """Scan the message once, at first need after end of data.

    Returns NOT_REQUESTED without bmi_run, SKIPPED when the message exceeds the scanner's
    max_size, SCANNED with the report, or FAILED (no scanner configured, scanner down,
    timeout, protocol error). Never raises for scanner trouble: the failure is a fact.
    """
    txn = ctx.txn
    if txn is None or not scan_requested(ctx):
        return sc.ScanResult(sc.ScanStatus.NOT_REQUESTED)
    bmi = _settings(ctx)
    scanner = ctx.services.get(SCANNER_SERVICE) if bmi.scanner is not None else None
    if scanner is None:
        return _failed(ctx, "no scanner configured in settings.bmi.scanner")
    headers = sc.header_block(txn.headers)
    size = len(headers) + 2 + txn.body.size
    if bmi.scanner is not None and size > bmi.scanner.max_size:
        ctx.note("scan", f"message of {size} bytes exceeds max_size {bmi.scanner.max_size}: not scanned", "skipped")
        return sc.ScanResult(sc.ScanStatus.SKIPPED, reason=f"message larger than {bmi.scanner.max_size} bytes")
    envelope = sc.Envelope(ctx.conn.client.address, ctx.conn.client.name, ctx.conn.helo, txn.sender,
                           tuple(r.address for r in txn.accepted_recipients if not r.discarded), txn.queue_id)
    try:
        with watched(ctx.services.metrics, SCANNER_SERVICE, (sc.ScannerError,)):
            report = scanner.scan(sc.assemble_message(txn.headers, txn.body.read()), envelope)
    except sc.ScannerError as exc:
        return _failed(ctx, str(exc))
    ctx.note("scan", f"{report.backend}: score {report.score:g}/{report.threshold:g} "
             f"spam={report.is_spam} rules={','.join(report.rules[:20])}", "scanned")
    return sc.ScanResult(sc.ScanStatus.SCANNED, report)


def _failed(ctx: EvalContext, reason: str) -> ScanResult:
    ctx.note("scan", f"scanner failure: {reason}", "failed")
    ctx.log_lines.append(f"bmi: scanner failure: {reason}")
    return sc.ScanResult(sc.ScanStatus.FAILED, reason=reason)


def _root(txn: Any, rcpt: Recipient) -> Recipient:
    """The scanned ancestor of a derived recipient (verdict inheritance); bounded, cycle-safe."""
    current, seen = rcpt, {id(rcpt)}
    for _ in range(len(txn.recipients) + 1):
        if current.parent is None:
            return current
        parent = next((r for r in txn.recipients
                       if r.address.lower() == current.parent.lower() and id(r) not in seen), None)
        if parent is None:
            return current
        seen.add(id(parent))
        current = parent
    return current


@registry.check("bmi_verdict", scope="recipient", needs=("scan",))
def verdict_check(ctx: EvalContext) -> Verdict:
    """The current recipient's verdict; a derived recipient (parent set) inherits its ancestor's.

    Raises LookupDefer when the scan failed and settings.bmi.on_scanner_failure is tempfail;
    with `accept` a failed scan gives the not-scanned defaults (deliver default).
    """
    rcpt = ctx.rcpt
    if rcpt is None or ctx.txn is None:
        raise ExpansionFailed("bmi verdict outside a recipient stage")
    scan: ScanResult = ctx.check("scan")
    bmi = _settings(ctx)
    if scan.status is sc.ScanStatus.FAILED and bmi.on_scanner_failure is FailureOutcome.TEMPFAIL:
        raise LookupDefer(f"bmi: scanner failure: {scan.reason}")
    root = _root(ctx.txn, rcpt)
    if root is not rcpt and root.parent is None:
        inherited = dataclasses.replace(ctx, rcpt=root).check("bmi_verdict")
        return dataclasses.replace(inherited, inherited_from=root.address)
    return compute_verdict(scan, OPTIN.on(rcpt), bmi.profiles)


# ---- DELIVER conditions and variables -------------------------------------------------------
def _is(kind: VerdictKind):
    def run(ctx: EvalContext, want: bool) -> Result:
        verdict: Verdict = ctx.check("bmi_verdict")
        return Result.OK if (verdict.kind is kind) == want else Result.FAIL
    return run


_DOCS = {
    VerdictKind.DELIVER_DEFAULT: "The verdict is to deliver normally (TRUE when the message was not scanned).",
    VerdictKind.DELIVER_ALTERNATE: "The verdict is to deliver to $bmi_alt_location (FALSE when not scanned).",
    VerdictKind.DONT_DELIVER: "The verdict is not to deliver (FALSE when not scanned).",
}
for _name, _kind in (("bmi_deliver_default", VerdictKind.DELIVER_DEFAULT),
                     ("bmi_deliver_alternate", VerdictKind.DELIVER_ALTERNATE),
                     ("bmi_dont_deliver", VerdictKind.DONT_DELIVER)):
    _fn = _is(_kind)
    _fn.__doc__ = _DOCS[_kind] + (" Returns OK when the verdict is this one (with the argument true; "
                                  "the opposite with false), else FAIL; DEFER when the scan failed and "
                                  "on_scanner_failure is tempfail.")
    registry.condition(_name, Stage.DELIVER, parse=parse_flag, checks=("bmi_verdict",),
                       variables=("bmi_alt_location",))(_fn)


@registry.condition("bmi_rule", Stage.DELIVER, parse=parse_rule_list, checks=("bmi_verdict",))
def _bmi_rule(ctx: EvalContext, names: tuple[str, ...]) -> Result:
    """True if any of the listed rules (`5:8:11`, `GTUBE:MISSING_DATE`) fired on the message
    (case-insensitive); FALSE when not scanned; DEFER when the scan failed under tempfail."""
    ctx.check("bmi_verdict")   # applies the failure outcome
    scan: ScanResult = ctx.check("scan")
    if not scan.scanned or scan.report is None:
        return Result.FAIL
    fired = {r.upper() for r in scan.report.rules}
    return Result.OK if any(n.upper() in fired for n in names) else Result.FAIL


def _current_verdict(ctx: EvalContext) -> Verdict | None:
    if ctx.stage is not Stage.DELIVER or ctx.rcpt is None or ctx.txn is None:
        return None
    return ctx.check("bmi_verdict")


@registry.variable("bmi_base64_verdict", Stage.DELIVER)
def _var_verdict(ctx: EvalContext) -> str:
    """Base64 verdict of the recipient being delivered ("" if not scanned); see docs/bmi.md."""
    v = _current_verdict(ctx)
    return v.base64 if v else ""


@registry.variable("bmi_base64_tracker_verdict", Stage.DATA | Stage.DELIVER)
def _var_tracker(ctx: EvalContext) -> str:
    """Base64 scan summary (scanner, score, required, spam, rules) ("" if not scanned)."""
    if ctx.txn is None or ctx.stage not in (Stage.DATA, Stage.DELIVER):
        return ""
    if ctx.stage is Stage.DELIVER and ctx.rcpt is not None:
        ctx.check("bmi_verdict")   # applies the failure outcome
    scan: ScanResult = ctx.check("scan")
    return tracker(scan.report) if scan.scanned else ""


@registry.variable("bmi_alt_location", Stage.DELIVER)
def _var_alt(ctx: EvalContext) -> str:
    """The alternate location of an `alternate` verdict ("" otherwise)."""
    v = _current_verdict(ctx)
    return v.location if v and v.kind is VerdictKind.DELIVER_ALTERNATE else ""


@registry.variable("bmi_deliver", Stage.DELIVER)
def _var_deliver(ctx: EvalContext) -> str:
    """1 unless the verdict is "don't deliver" (then 0); 1 when not scanned."""
    v = _current_verdict(ctx)
    return "0" if v is not None and not v.deliver else "1"


# ---- verdict headers ------------------------------------------------------------------------
def _delivered(ctx: EvalContext) -> list[Recipient]:
    """Recipients that still get the message: accepted, not deleted (a redirect still delivers)."""
    txn = ctx.txn
    assert txn is not None                  # an end-of-message hook: there is a message
    edits = txn.edits
    deleted = {d.address.lower() for d in edits.rcpt_deletes} if edits is not None else set()
    out = []
    for r in txn.recipients:
        if not r.accepted or r.discarded:
            continue
        gone = (r.raw or f"<{r.address}>").lower() in deleted or f"<{r.address}>".lower() in deleted
        if gone and "redirected_to" not in r.vars:
            continue
        out.append(r)
    return out


@registry.eom_hook("bmi_headers", phase="after_deliver", order=60,
                   wanted=lambda policy: policy.uses_control("bmi_run"))
def verdict_headers(ctx: EvalContext, decision: Any) -> None:
    """Add the verdict and tracker headers when every delivered recipient has the same verdict.

    Nothing is added without a scan, when the verdicts differ (one copy cannot carry
    per-recipient headers), or when a verdict cannot be had (failure under tempfail: the
    DELIVER ACL has tempfailed the message then). Incoming headers of the same names are
    removed so a sender cannot plant a verdict.
    """
    txn = ctx.txn
    if txn is None or txn.edits is None or not scan_requested(ctx):
        return
    result = getattr(decision, "result", None)
    if result in (Result.FAIL, Result.DROP, Result.DEFER, Result.ERROR):
        return
    bmi = _settings(ctx)
    names = [n for n in (bmi.verdict_header, bmi.tracker_header) if n]
    for name in names:
        if txn.header_values(name):
            txn.edits.header_removes.append(HeaderRemove(name=name, source="bmi_headers"))
    verdicts: set[str] = set()
    for rcpt in _delivered(ctx):
        try:
            v = dataclasses.replace(ctx, rcpt=rcpt, stage=Stage.DELIVER).check("bmi_verdict")
        except LookupDefer as exc:
            ctx.note("bmi", f"verdict headers left out: {exc}", "skipped")
            return
        verdicts.add(v.base64)
    if len(verdicts) != 1 or "" in verdicts:
        ctx.note("bmi", f"verdict headers left out: {len(verdicts)} distinct verdicts", "skipped")
        return
    scan: ScanResult = ctx.check("scan")
    values: tuple[tuple[str | None, str | None], ...] = (
        (bmi.verdict_header, verdicts.pop()), (bmi.tracker_header, tracker(scan.report)))
    for header, text in values:
        if header and text:
            txn.edits.add_header(HeaderAdd(header, text, HeaderPosition.START, "bmi_headers"))
