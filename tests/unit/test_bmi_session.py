"""BMI through the real loader, engine and Session, with a scanner stand-in (no daemons).

The shipped example policy (policies/examples/bmi.yaml) is loaded with only its opt-in file
path and scanner address replaced, so these tests also prove the example means what it says.
"""

from __future__ import annotations

import base64
from pathlib import Path


from aclmilter.checks.scan import Envelope, ScannerError, ScanReport
from aclmilter.runtime import Runtime
from aclmilter.session import Action, Session

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "policies" / "examples" / "bmi.yaml"
OPTIN = ROOT / "tests" / "fixtures" / "bmi" / "optin.lsearch"
SPAM = ScanReport("spamd", 1004.2, 5.0, True, ("GTUBE", "MISSING_DATE"))
HAM = ScanReport("spamd", 0.1, 5.0, False, ("NO_RELAYS",))


class StandIn:
    """Answers like a backend: a fixed report, or a ScannerError; counts the scans."""

    name = "stand-in"

    def __init__(self, answer: ScanReport | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[bytes, Envelope]] = []

    def scan(self, message: bytes, envelope: Envelope) -> ScanReport:
        self.calls.append((message, envelope))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def policy_text(*, failure: str = "tempfail", homogeneous: bool = True, rule_redirect: bool = True) -> str:
    text = EXAMPLE.read_text().replace("/etc/aclmilter/bmi_optin_data", str(OPTIN))
    text = text.replace("on_scanner_failure: tempfail", f"on_scanner_failure: {failure}")
    text = text.replace("homogeneous: true", f"homogeneous: {'true' if homogeneous else 'false'}")
    if not rule_redirect:
        text = text.replace('bmi_rule: "GTUBE:5:8:11"', 'bmi_rule: "5:8:11"')
    return text


def session(tmp_path: Path, scanner: StandIn, text: str) -> Session:
    path = tmp_path / "bmi.yaml"
    path.write_text(text)
    rt = Runtime(path, monitor=False, overrides={"scanner:bmi": scanner})
    rt.load()
    s = Session(rt)
    s.connect("mx.example.net", "inet", "192.0.2.7", 4000, {})
    s.helo("mx.example.net", {})
    return s


def send(s: Session, rcpts: list[str], body: bytes = b"hello\r\n", extra=()):
    s.mail("<alice@example.org>", [], {"i": "QID1"})
    replies = {r: s.rcpt(f"<{r}>", ["NOTIFY=NEVER"], {}) for r in rcpts}
    s.data({})
    for name, value in [("From", "<alice@example.org>"), ("Subject", "folded\n\tsubject"), *extra]:
        s.header(name, value)
    s.eoh()
    s.body(body)
    return replies, s.eom({"i": "QID1"})


def decode(v: str) -> str:
    return base64.b64decode(v).decode()


def headers(result) -> dict[str, str]:
    return {a.name: a.value for a in result.edits.header_adds if a.source == "bmi_headers"}


def test_no_bmi_run_no_scan(tmp_path: Path) -> None:
    scanner = StandIn(SPAM)
    s = session(tmp_path, scanner, policy_text().replace("control: bmi_run", "control: no_multiline_responses"))
    _, res = send(s, ["dropper@example.com"])
    assert scanner.calls == []
    assert res.response.action is Action.CONTINUE
    assert not res.edits.rcpt_deletes and not res.edits.rcpt_adds and not headers(res)


def test_mixed_optins_get_their_own_verdicts(tmp_path: Path) -> None:
    scanner = StandIn(SPAM)
    s = session(tmp_path, scanner, policy_text(homogeneous=False, rule_redirect=False))
    _, res = send(s, ["dropper@example.com", "quarantined@example.com", "plain@example.com"])
    assert len(scanner.calls) == 1, "one scan per message, whatever the number of recipients"
    message, env = scanner.calls[0]
    assert message.startswith(b"From: <alice@example.org>\r\nSubject: folded\r\n\tsubject\r\n\r\nhello")
    assert env.recipients == ("dropper@example.com", "quarantined@example.com", "plain@example.com")
    assert (env.client_address, env.helo, env.sender, env.queue_id) == \
        ("192.0.2.7", "mx.example.net", "alice@example.org", "QID1")
    assert res.response.action is Action.CONTINUE
    assert sorted(d.address for d in res.edits.rcpt_deletes) == ["<dropper@example.com>",
                                                                  "<quarantined@example.com>"]
    assert [(a.address, a.params) for a in res.edits.rcpt_adds] == [("quarantine@example.org", ("NOTIFY=NEVER",))]
    # three different verdicts on one copy: no verdict headers
    assert headers(res) == {}


def test_all_drop_discards_the_message(tmp_path: Path) -> None:
    s = session(tmp_path, StandIn(SPAM), policy_text())
    _, res = send(s, ["dropper@example.com"])
    assert res.response.action is Action.DISCARD


def test_headers_added_when_verdicts_agree(tmp_path: Path) -> None:
    s = session(tmp_path, StandIn(HAM), policy_text(homogeneous=False))
    # different opt-ins, but ham: every recipient gets "deliver default"
    _, res = send(s, ["dropper@example.com", "plain@example.com"],
                  extra=[("X-Brightmail-Verdict", "forged")])
    assert res.response.action is Action.CONTINUE and not res.edits.rcpt_deletes
    h = headers(res)
    assert decode(h["X-Brightmail-Verdict"]) == "v=1; verdict=default; profile=default"
    assert decode(h["X-Brightmail-Tracker"]) == \
        "v=1; scanner=spamd; score=0.1; required=5.0; spam=no; rules=NO_RELAYS"
    assert [r.name for r in res.edits.header_removes] == ["X-Brightmail-Verdict"]
    assert all("example.com" not in v for v in h.values())


def test_bmi_rule_redirects_to_postmaster(tmp_path: Path) -> None:
    s = session(tmp_path, StandIn(SPAM), policy_text())
    _, res = send(s, ["plain@example.com"])
    assert [d.address for d in res.edits.rcpt_deletes] == ["<plain@example.com>"]
    assert [a.address for a in res.edits.rcpt_adds] == ["postmaster@example.com"]
    # one recipient (redirected): its verdict is the only one, so the headers go on
    assert decode(headers(res)["X-Brightmail-Verdict"]) == "v=1; verdict=default; profile=default"


def test_homogeneous_mode_defers_a_recipient_with_another_profile(tmp_path: Path) -> None:
    s = session(tmp_path, StandIn(SPAM), policy_text())
    replies, res = send(s, ["plain@example.com", "other@example.com", "dropper@example.com"])
    assert replies["plain@example.com"].action is Action.CONTINUE
    assert replies["other@example.com"].action is Action.CONTINUE   # no opt-in: same profile
    odd = replies["dropper@example.com"]
    assert odd.action is Action.TEMPFAIL
    assert (odd.reply.code, odd.reply.ecode) == (452, "4.5.3")


def test_homogeneous_off_accepts_everyone(tmp_path: Path) -> None:
    s = session(tmp_path, StandIn(SPAM), policy_text(homogeneous=False))
    replies, _ = send(s, ["plain@example.com", "dropper@example.com"])
    assert all(r.action is Action.CONTINUE for r in replies.values())


def test_scanner_failure_tempfails_by_default(tmp_path: Path) -> None:
    scanner = StandIn(ScannerError("127.0.0.1:783: Connection refused"))
    s = session(tmp_path, scanner, policy_text())
    _, res = send(s, ["dropper@example.com", "plain@example.com"])
    assert res.response.action is Action.TEMPFAIL
    assert len(scanner.calls) == 1, "a failed scan is memoised, not retried per recipient"
    assert headers(res) == {}


def test_scanner_failure_accept_delivers_default(tmp_path: Path) -> None:
    s = session(tmp_path, StandIn(ScannerError("timeout")), policy_text(failure="accept"))
    _, res = send(s, ["dropper@example.com", "quarantined@example.com"])
    assert res.response.action is Action.CONTINUE
    assert not res.edits.rcpt_deletes and not res.edits.rcpt_adds and headers(res) == {}


def test_no_scanner_configured_is_a_failure(tmp_path: Path) -> None:
    text = """
acl:
  rcpt: [{accept: {control: bmi_run}}]
  deliver: [{accept: {bmi_deliver_default: "yes"}}]
"""
    s = session(tmp_path, StandIn(HAM), text)
    _, res = send(s, ["a@example.com"])
    assert res.response.action is Action.TEMPFAIL


def test_variables_and_inheritance(tmp_path: Path) -> None:
    text = f"""
settings:
  bmi:
    scanner: {{type: rspamd, address: "http://127.0.0.1:11333"}}
    profiles:
      - {{optin: drop-spam, when: spam, verdict: alternate, location: "junk@example.org"}}
acl:
  rcpt:
    - accept: {{control: bmi_run, bmi_optin: "${{lookup{{$local_part@$domain}}lsearch{{{OPTIN}}}}}"}}
  deliver:
    - accept:
        set: {{acl_m_seen: "$acl_m_seen $recipient=$bmi_deliver/$bmi_alt_location/${{if eq{{$bmi_base64_verdict}}{{}}{{none}}{{set}}}}"}}
"""
    s = session(tmp_path, StandIn(SPAM), text)
    s.mail("<alice@example.org>", [], {})
    s.rcpt("<dropper@example.com>", [], {})
    s.rcpt("<plain@example.com>", [], {})
    # a recipient derived from a scanned one (e.g. by an alias) inherits its verdict
    child = type(s.txn.recipients[0])("alias-target@example.net", (), "<alias-target@example.net>",
                                      parent="dropper@example.com")
    s.txn.recipients.append(child)
    s.data({})
    s.body(b"x\r\n")
    res = s.eom({})
    assert res.response.action is Action.CONTINUE
    seen = s.txn.acl_m["acl_m_seen"].split()
    assert seen == ["dropper@example.com=1/junk@example.org/set", "plain@example.com=1//set",
                    "alias-target@example.net=1/junk@example.org/set"]
