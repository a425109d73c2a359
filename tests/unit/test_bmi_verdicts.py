"""Pure BMI verdict logic: settings schema, `when` tests, profiles, encodings."""

import base64

import pytest
from hypothesis import given, strategies as st

from aclmilter.checks.bmi import (NOT_SCANNED, TRACKER_BUDGET, FailureOutcome, VerdictKind, compute_verdict,
                                  effective_profile, parse_bmi, parse_optin, parse_when, tracker)
from aclmilter.checks.scan import Endpoint, ScanReport, ScanResult, ScanStatus, parse_endpoint
from aclmilter.errors import SyntaxProblem

SPAM = ScanResult(ScanStatus.SCANNED, ScanReport("spamd", 1004.2, 5.0, True, ("GTUBE", "MISSING_DATE")))
HAM = ScanResult(ScanStatus.SCANNED, ScanReport("spamd", 0.3, 5.0, False, ("NO_RELAYS",)))

PROFILES = parse_bmi({
    "scanner": {"type": "spamd", "address": "127.0.0.1:783"},
    "profiles": [
        {"name": "quarantine", "optin": "spam-to-quarantine", "when": "spam", "verdict": "alternate",
         "location": "quarantine@example.org"},
        {"name": "drop", "optin": "drop-spam", "when": "spam", "verdict": "dont_deliver"},
        {"name": "tagged", "optin": "strict", "when": "score >= 0.2", "verdict": "alternate",
         "location": "X-Spam-Flag: YES"},
        {"name": "relays", "when": "rule: NO_RELAYS:OTHER", "verdict": "deliver"},
    ]}).profiles


def decode(b64: str) -> str:
    return base64.b64decode(b64).decode("ascii")


def test_defaults_when_not_scanned():
    for status in (ScanStatus.NOT_REQUESTED, ScanStatus.FAILED, ScanStatus.SKIPPED):
        v = compute_verdict(ScanResult(status), ("drop-spam",), PROFILES)
        assert v == NOT_SCANNED
        assert (v.kind, v.deliver, v.base64, v.location) == (VerdictKind.DELIVER_DEFAULT, True, "", "")


@pytest.mark.parametrize("optin,scan,kind,location,profile", [
    (("spam-to-quarantine",), SPAM, VerdictKind.DELIVER_ALTERNATE, "quarantine@example.org", "quarantine"),
    (("drop-spam",), SPAM, VerdictKind.DONT_DELIVER, "", "drop"),
    (("DROP-SPAM", "spam-to-quarantine"), SPAM, VerdictKind.DELIVER_ALTERNATE, "quarantine@example.org",
     "quarantine"),
    ((), SPAM, VerdictKind.DELIVER_DEFAULT, "", "default"),
    (("drop-spam",), HAM, VerdictKind.DELIVER_DEFAULT, "", "relays"),
    (("strict",), HAM, VerdictKind.DELIVER_ALTERNATE, "X-Spam-Flag: YES", "tagged"),
])
def test_first_matching_rule_decides(optin, scan, kind, location, profile):
    v = compute_verdict(scan, optin, PROFILES)
    assert (v.kind, v.location, v.profile, v.scanned) == (kind, location, profile, True)
    assert v.deliver is (kind is not VerdictKind.DONT_DELIVER)
    assert decode(v.base64) == f"v=1; verdict={kind.value}; profile={profile}"


def test_verdict_encoding_never_holds_an_address():
    v = compute_verdict(SPAM, ("spam-to-quarantine",), PROFILES)
    assert "@" not in decode(v.base64)


def test_effective_profile_ignores_optins_no_rule_mentions():
    assert effective_profile(("unknown",), PROFILES) == effective_profile((), PROFILES) == ("relays",)
    assert effective_profile(("drop-spam",), PROFILES) == ("drop", "relays")


@pytest.mark.parametrize("text,report,holds", [
    ("always", HAM.report, True), ("*", SPAM.report, True),
    ("spam", SPAM.report, True), ("spam", HAM.report, False), ("ham", HAM.report, True),
    ("not spam", SPAM.report, False),
    ("score >= 5", SPAM.report, True), ("score > 1004.2", SPAM.report, False), ("score<1", HAM.report, True),
    ("score <= -1", HAM.report, False),
    ("rule: gtube", SPAM.report, True), ("rule: A:MISSING_DATE", SPAM.report, True), ("rule: A, B", SPAM.report, False),
])
def test_when(text, report, holds):
    assert parse_when(text).holds(report) is holds


@pytest.mark.parametrize("text", ["sometimes", "score = 5", "rule:", "rule: a b", True, None, "score >= x"])
def test_bad_when(text):
    with pytest.raises(SyntaxProblem):
        parse_when(text)


def test_optin_split_on_commas_and_colons_and_cleaned():
    assert parse_optin("a, b:c,,a: d\r\n") == ("a", "b", "c", "d")


def test_tracker_encoding():
    assert tracker(None) == ""
    assert decode(tracker(SPAM.report)) == \
        "v=1; scanner=spamd; score=1004.2; required=5.0; spam=yes; rules=GTUBE,MISSING_DATE"
    r = ScanReport("rspamd", 15.0, 15.0, True, ("GTUBE",), "add header")
    assert decode(tracker(r)) == "v=1; scanner=rspamd; score=15.0; required=15.0; spam=yes; action=add_header; rules=GTUBE"


@given(st.lists(st.text(min_size=1, max_size=80), max_size=300), st.floats(allow_nan=False, allow_infinity=False,
                                                                          min_value=-1e6, max_value=1e6))
def test_tracker_is_one_short_header_safe_line(rules, score):
    value = tracker(ScanReport("spamd", score, 5.0, score >= 5, tuple(rules)))
    assert len(value) < 998
    text = decode(value)
    assert all(32 <= ord(c) < 127 for c in text)
    assert len(text) <= TRACKER_BUDGET + 40


# ---- settings schema ---------------------------------------------------------------------
def test_minimal_settings_and_defaults():
    s = parse_bmi({"scanner": {"type": "rspamd", "address": "http://127.0.0.1:11333"}})
    assert s.scanner.endpoint == Endpoint(host="127.0.0.1", port=11333)
    assert s.scanner.timeout == 20.0
    assert s.on_scanner_failure is FailureOutcome.TEMPFAIL
    assert (s.verdict_header, s.tracker_header, s.homogeneous, s.profiles) == \
        ("X-Brightmail-Verdict", "X-Brightmail-Tracker", False, ())
    assert parse_bmi(None).scanner is None


@pytest.mark.parametrize("raw,fragment", [
    ({"scaner": {}}, "unknown key 'scaner'"),
    ({"scanner": {"type": "spamd", "address": "127.0.0.1:783", "tls": True}}, "unknown key 'tls'"),
    ({"scanner": {"type": "clamd", "address": "x:1"}}, "bmi.scanner.type"),
    ({"scanner": {"type": "spamd"}}, "address is required"),
    ({"scanner": {"type": "spamd", "address": "http://127.0.0.1:783"}}, "scheme"),
    ({"scanner": {"type": "rspamd", "address": "https://127.0.0.1"}}, "scheme"),
    ({"scanner": {"type": "rspamd", "address": "127.0.0.1:11333", "command": "report"}}, "spamd only"),
    ({"scanner": {"type": "spamd", "address": "127.0.0.1:783", "timeout": 0}}, "timeout"),
    ({"scanner": {"type": "spamd", "address": "127.0.0.1:783", "user": "a b"}}, "user"),
    ({"on_scanner_failure": "reject"}, "tempfail or accept"),
    ({"profiles": {"a": 1}}, "list"),
    ({"profiles": [{"when": "spam", "verdict": "alternate"}]}, "needs a location"),
    ({"profiles": [{"when": "spam", "verdict": "dont_deliver", "location": "x"}]}, "only an alternate"),
    ({"profiles": [{"when": "spam", "verdict": "bounce"}]}, "verdict"),
    ({"profiles": [{"verdict": "deliver"}]}, "`when` is required"),
    ({"profiles": [{"when": "spam", "verdict": "deliver", "optn": "x"}]}, "unknown key 'optn'"),
    ({"profiles": [{"when": "spam", "verdict": "alternate", "location": "a\nb"}]}, "one line"),
    ({"profiles": [{"name": "a", "when": "spam", "verdict": "deliver"},
                   {"name": "a", "when": "ham", "verdict": "deliver"}]}, "twice"),
    ({"verdict_header": "X-Bad: header"}, "header name"),
    ({"homogeneous": "maybe"}, "homogeneous"),
])
def test_settings_are_a_closed_schema(raw, fragment):
    with pytest.raises(SyntaxProblem, match=".*" + fragment.replace("(", r"\(")):
        parse_bmi(raw)


@pytest.mark.parametrize("text,expected", [
    ("/run/spamd.sock", Endpoint(path="/run/spamd.sock")),
    ("127.0.0.1:783", Endpoint(host="127.0.0.1", port=783)),
    ("localhost", Endpoint(host="localhost", port=783)),
    ("[::1]:7830", Endpoint(host="::1", port=7830)),
])
def test_endpoints(text, expected):
    assert parse_endpoint(text, 783) == expected


@pytest.mark.parametrize("text", ["", "::1:783", "host:99999", "a b:1", "[::1", "http://h:1/path"])
def test_bad_endpoints(text):
    with pytest.raises(SyntaxProblem):
        parse_endpoint(text, 783, allow_http=True)
