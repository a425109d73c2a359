# SPDX-License-Identifier: GPL-3.0-or-later
"""BMI-style per-recipient verdicts: profiles map (scan report, opt-in strings) to a verdict.

Exim's Brightmail support asked one server for one verdict per recipient: deliver normally,
deliver to an alternate location, or do not deliver. Here a real scanner gives one report per
message and `settings.bmi.profiles` — an ordered list of rules — turns it into a verdict per
recipient from that recipient's opt-in strings (`bmi_optin`). The first rule whose opt-in and
`when` both match decides; no match means "deliver default". Everything here is pure.

Encodings (documented in docs/bmi.md), both base64 (RFC 4648, with padding) of ASCII text:
- verdict: `v=1; verdict=<default|alternate|dont_deliver>; profile=<name>`
- tracker: `v=1; scanner=<spamd|rspamd>; score=<n>; required=<n>; spam=<yes|no>;
  [action=<rspamd action>;] rules=<R1,R2,...>[; more=<count left out>]`
Neither carries an address, so a header built from them reveals no recipient (Bcc privacy).
"""

from __future__ import annotations

import base64
import enum
import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .. import lazy
from ..errors import SyntaxProblem

# The scanner protocols are imported when a policy configures a scanner (parse_bmi) or a
# message is scanned: `aclmilter check` of a policy without one never pays (issue 23, lazy.py).
if TYPE_CHECKING:  # pragma: no cover
    from . import scan
    from .scan import ScannerConfig, ScanReport, ScanResult
else:
    scan = lazy.module("aclmilter.checks.scan")

_TOKEN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}\Z")
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}\Z")
#: Keep the tracker's plain text short enough that its base64 fits one header line (< 998).
TRACKER_BUDGET = 600


class VerdictKind(enum.Enum):
    """The three outcomes Exim's BMI routers distinguish."""

    DELIVER_DEFAULT = "default"
    DELIVER_ALTERNATE = "alternate"
    DONT_DELIVER = "dont_deliver"


class FailureOutcome(enum.Enum):
    """What a scanner failure means for the verdict conditions."""

    TEMPFAIL = "tempfail"   # the verdict conditions DEFER -> a DELIVER defer tempfails the message
    ACCEPT = "accept"       # as if the message had not been scanned: deliver default


# ---- `when`: the condition on the scan report --------------------------------------------
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
}


@dataclass(frozen=True)
class When:
    """A test on the report: always, spam, ham, `score OP N`, or `rule: A:B` (any fired)."""

    kind: str                       # "always" | "spam" | "ham" | "score" | "rule"
    op: str = ""
    value: float = 0.0
    rules: tuple[str, ...] = ()
    text: str = ""

    def holds(self, report: ScanReport) -> bool:
        """True if the report satisfies this test."""
        if self.kind == "always":
            return True
        if self.kind == "spam":
            return report.is_spam
        if self.kind == "ham":
            return not report.is_spam
        if self.kind == "score":
            return _OPS[self.op](report.score, self.value)
        fired = {r.upper() for r in report.rules}
        return any(r.upper() in fired for r in self.rules)


_SCORE = re.compile(r"^score\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)$", re.I)


def parse_when(text: Any) -> When:
    """Parse a `when:` value; raise SyntaxProblem for anything unknown."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise SyntaxProblem("when: a string such as spam, ham, \"score >= 7\" or \"rule: GTUBE\" is expected")
    t = str(text).strip()
    low = t.lower()
    if low in ("always", "*"):
        return When("always", text=t)
    if low == "spam":
        return When("spam", text=t)
    if low in ("ham", "not spam"):
        return When("ham", text=t)
    m = _SCORE.match(t)
    if m:
        return When("score", m.group(1), float(m.group(2)), text=t)
    if low.startswith("rule"):
        rest = t[4:].lstrip()
        rest = rest[1:] if rest.startswith(":") else rest
        names = parse_rule_list(rest)
        return When("rule", rules=names, text=t)
    raise SyntaxProblem(f"when: {t!r} is not one of always, spam, ham, \"score >= N\", \"rule: NAME\"")


def parse_rule_list(text: str) -> tuple[str, ...]:
    """Parse `5:8:11` or `GTUBE, MISSING_DATE` into rule names; SyntaxProblem if empty or odd."""
    names = tuple(x.strip() for x in re.split(r"[:,]", str(text)) if x.strip())
    if not names:
        raise SyntaxProblem("at least one rule name is expected")
    for name in names:
        if not _TOKEN.fullmatch(name):
            raise SyntaxProblem(f"{name!r} is not a rule name (letters, digits, _ . -)")
    return names


# ---- profiles --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileRule:
    """One entry of settings.bmi.profiles: who (opt-in), when, and what verdict."""

    name: str
    optin: tuple[str, ...]          # () = every recipient
    when: When
    verdict: VerdictKind
    location: str = ""

    def applies_to(self, optin: tuple[str, ...]) -> bool:
        """True if the rule is for a recipient with these opt-in strings."""
        if not self.optin:
            return True
        have = {o.lower() for o in optin}
        return any(o.lower() in have for o in self.optin)


_PROFILE_KEYS = ("name", "optin", "when", "verdict", "location")
_VERDICT_WORDS = {"deliver": VerdictKind.DELIVER_DEFAULT, "default": VerdictKind.DELIVER_DEFAULT,
                  "alternate": VerdictKind.DELIVER_ALTERNATE, "dont_deliver": VerdictKind.DONT_DELIVER}


def parse_optin(text: Any) -> tuple[str, ...]:
    """Split opt-in strings on commas and colons (the seed uses both), dropping empty ones.

    The strings usually come from a lookup, so control characters are removed; order is
    kept and duplicates dropped.
    """
    if isinstance(text, (list, tuple)):
        parts = [str(x) for x in text]
    else:
        parts = re.split(r"[:,]", str(text))
    out: list[str] = []
    for p in parts:
        p = "".join(c for c in p if ord(c) >= 32 and c != "\x7f").strip()
        if p and p not in out:
            out.append(p)
    return tuple(out)


def parse_profile(raw: Any, index: int) -> ProfileRule:
    """Validate one profile rule (closed schema)."""
    where = f"bmi.profiles[{index}]"
    if not isinstance(raw, dict):
        raise SyntaxProblem(f"{where}: a mapping with when and verdict is expected")
    unknown = [k for k in raw if k not in _PROFILE_KEYS]
    if unknown:
        raise SyntaxProblem(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_PROFILE_KEYS)})")
    name = str(raw.get("name", f"profile{index + 1}"))
    if not _TOKEN.fullmatch(name):
        raise SyntaxProblem(f"{where}.name: letters, digits, _ . - only (it goes into a header)")
    optin = parse_optin(raw["optin"]) if raw.get("optin") not in (None, "", "*") else ()
    if "when" not in raw:
        raise SyntaxProblem(f"{where}: `when` is required (use \"always\" for every message)")
    try:
        when = parse_when(raw["when"])
    except SyntaxProblem as exc:
        raise SyntaxProblem(f"{where}.{exc}") from None
    word = str(raw.get("verdict", "")).lower()
    if word not in _VERDICT_WORDS:
        raise SyntaxProblem(f"{where}.verdict: one of deliver, alternate, dont_deliver is expected")
    verdict = _VERDICT_WORDS[word]
    location = raw.get("location")
    if verdict is VerdictKind.DELIVER_ALTERNATE:
        if not isinstance(location, str) or not location.strip():
            raise SyntaxProblem(f"{where}.location: an alternate verdict needs a location")
        if any(ord(c) < 32 or c == "\x7f" for c in location) or len(location) > 900:
            raise SyntaxProblem(f"{where}.location: one line without control characters")
        location = location.strip()
    elif location is not None:
        raise SyntaxProblem(f"{where}.location: only an alternate verdict has a location")
    return ProfileRule(name, optin, when, verdict, location or "")


# ---- settings.bmi ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BmiSettings:
    """settings.bmi, validated. With no scanner configured every scan is a failure."""

    scanner: ScannerConfig | None = None
    on_scanner_failure: FailureOutcome = FailureOutcome.TEMPFAIL
    profiles: tuple[ProfileRule, ...] = ()
    verdict_header: str | None = "X-Brightmail-Verdict"
    tracker_header: str | None = "X-Brightmail-Tracker"
    homogeneous: bool = False


_BMI_KEYS = ("scanner", "on_scanner_failure", "profiles", "verdict_header", "tracker_header", "homogeneous")


def _header_name(value: Any, key: str) -> str | None:
    if value is None or value == "" or value is False:
        return None   # no such header
    if not isinstance(value, str) or not _HEADER_NAME.match(value):
        raise SyntaxProblem(f"bmi.{key}: a header name (printable ASCII, no colon) or empty is expected")
    return value


def parse_bmi(raw: Any) -> BmiSettings:
    """Validate settings.bmi (closed schema at every level); raise SyntaxProblem on any mistake."""
    if raw is None:
        return BmiSettings()
    if not isinstance(raw, dict):
        raise SyntaxProblem("bmi must be a mapping")
    unknown = [k for k in raw if k not in _BMI_KEYS]
    if unknown:
        raise SyntaxProblem(f"bmi: unknown key {unknown[0]!r} (known: {', '.join(_BMI_KEYS)})")
    scanner = scan.parse_scanner(raw["scanner"]) if raw.get("scanner") is not None else None
    failure_word = str(raw.get("on_scanner_failure", "tempfail")).lower()
    try:
        failure = FailureOutcome(failure_word)
    except ValueError:
        raise SyntaxProblem("bmi.on_scanner_failure: tempfail or accept is expected") from None
    profiles_raw = raw.get("profiles") or []
    if not isinstance(profiles_raw, list):
        raise SyntaxProblem("bmi.profiles: a list of rules is expected")
    profiles = tuple(parse_profile(p, i) for i, p in enumerate(profiles_raw))
    names = [p.name for p in profiles]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None or "default" in names:
        raise SyntaxProblem(f"bmi.profiles: profile name {dup or 'default'!r} is used twice or reserved")
    homogeneous = raw.get("homogeneous", False)
    if not isinstance(homogeneous, bool):
        raise SyntaxProblem("bmi.homogeneous: true or false is expected")
    return BmiSettings(scanner, failure, profiles,
                       _header_name(raw.get("verdict_header", "X-Brightmail-Verdict"), "verdict_header"),
                       _header_name(raw.get("tracker_header", "X-Brightmail-Tracker"), "tracker_header"),
                       homogeneous)


# ---- verdicts -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """One recipient's verdict. `scanned` is False when no scan result backs it (seed defaults)."""

    kind: VerdictKind = VerdictKind.DELIVER_DEFAULT
    profile: str = "default"
    location: str = ""
    scanned: bool = False
    inherited_from: str | None = None

    @property
    def deliver(self) -> bool:
        """Exim's $bmi_deliver: False only for "don't deliver"."""
        return self.kind is not VerdictKind.DONT_DELIVER

    @property
    def base64(self) -> str:
        """$bmi_base64_verdict: "" without a scan, else the documented encoding."""
        if not self.scanned:
            return ""
        return _b64(f"v=1; verdict={self.kind.value}; profile={self.profile}")


NOT_SCANNED = Verdict()


def compute_verdict(scan: ScanResult, optin: tuple[str, ...], profiles: tuple[ProfileRule, ...]) -> Verdict:
    """Return the verdict for one recipient: the first rule that applies and holds, else default."""
    if not scan.scanned:
        return NOT_SCANNED
    report = scan.report
    assert report is not None
    for rule in profiles:
        if rule.applies_to(optin) and rule.when.holds(report):
            return Verdict(rule.verdict, rule.name, rule.location, True)
    return Verdict(VerdictKind.DELIVER_DEFAULT, "default", "", True)


def effective_profile(optin: tuple[str, ...], profiles: tuple[ProfileRule, ...]) -> tuple[str, ...]:
    """Names of the rules that can apply to a recipient with these opt-ins.

    Two recipients with the same effective profile get the same verdict for every message,
    whatever the spelling of opt-in strings no rule mentions.
    """
    return tuple(rule.name for rule in profiles if rule.applies_to(optin))


def tracker(report: ScanReport | None) -> str:
    """$bmi_base64_tracker_verdict: "" without a report, else the documented encoding.

    Rule names are kept in the scanner's order until the plain text would pass
    TRACKER_BUDGET bytes; the number left out is recorded as `more=N`.
    """
    if report is None:
        return ""
    head = (f"v=1; scanner={report.backend}; score={_num(report.score)}; "
            f"required={_num(report.threshold)}; spam={'yes' if report.is_spam else 'no'}; ")
    if report.action and _TOKEN.fullmatch(report.action.replace(" ", "_")):
        head += f"action={report.action.replace(' ', '_')}; "
    kept: list[str] = []
    names = [r for r in report.rules if _TOKEN.fullmatch(r)]
    size = len(head) + len("rules=")
    for name in names:
        if size + len(name) + 1 + len("; more=99999") > TRACKER_BUDGET:
            break
        kept.append(name)
        size += len(name) + 1
    text = head + "rules=" + ",".join(kept)
    if len(kept) < len(names):
        text += f"; more={len(names) - len(kept)}"
    return _b64(text)


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("ascii", "replace")).decode("ascii")
