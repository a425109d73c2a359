"""Monitor mode (dry_run): only refusals, discards, quarantines and recipient edits are left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from aclmilter.runtime import Runtime
from aclmilter.session import Action, Session
from tests.unit.fakes_ctx import FakeDns

POLICY = """\
settings:
  authserv_id: mx.test.example
acl:
  mail:
    - warn: {add_header: "X-Mail-Seen: $sender_address"}
    - deny: {senders: "*@bad.example", message: "550 5.7.1 bad sender"}
    - accept
  rcpt:
    - discard: {local_parts: dropped}
    - accept
  data:
    - warn: {add_header: "X-Data-Seen: yes", control: "quarantine/held by test"}
    - deny: {condition: "${if match{$h_subject:}{spam}}"}
    - accept
  deliver:
    - discard: {local_parts: gone}
    - accept: {local_parts: moved, redirect: elsewhere@y.example}
    - accept
"""


def run(tmp_path: Path, sender: str, rcpts: list[str], subject: str, monitor: bool,
        policy: str = POLICY) -> tuple[list[Action], object]:
    path = tmp_path / "monitor.yaml"
    path.write_text(policy)
    rt = Runtime(path, monitor=monitor, overrides={"dns": FakeDns()})
    rt.load()
    s = Session(rt)
    actions = [s.connect("[192.0.2.1]", "inet", "192.0.2.1", 1, {}).action,
               s.mail(f"<{sender}>", [], {}).action]
    actions += [s.rcpt(f"<{r}>", [], {}).action for r in rcpts]
    actions.append(s.data({}).action)
    s.header("From", sender)
    s.header("Authentication-Results", "mx.test.example; spf=pass (forged)")
    s.header("Subject", subject)
    s.body(b"hello\r\n")
    eom = s.eom({"i": "QID1"})
    return actions + [eom.response.action], eom


def added(eom: object) -> dict[str, str]:
    return {a.name: a.value for a in eom.edits.header_adds}  # type: ignore[attr-defined]


def test_monitor_mode_keeps_every_header_and_names_the_first_refusal(tmp_path: Path) -> None:
    actions, eom = run(tmp_path, "a@bad.example", ["gone@x.example", "moved@x.example", "b@x.example"],
                       "spam", monitor=True)
    assert set(actions) == {Action.CONTINUE}
    headers = added(eom)
    # the policy's add_header from MAIL and DATA, our A-R (a DATA deny does not suppress it)
    assert headers["X-Mail-Seen"] == "a@bad.example"
    assert headers["X-Data-Seen"] == "yes"
    assert headers["Authentication-Results"].startswith("mx.test.example;")
    # the forged A-R is still removed
    assert eom.header_changes == [("Authentication-Results", 1, "")]
    # the MAIL deny came first: the header names it (monitor.yaml:6), not the DATA deny
    assert headers["X-ACLMilter-Dry-Run"] == ("would reject at mail (" + str(tmp_path / "monitor.yaml")
                                              + ":6); would remove 2 recipient(s); would add 1 recipient(s)"
                                              "; would quarantine")
    # recipient edits and the quarantine are left out
    assert eom.edits.rcpt_deletes == [] and eom.edits.rcpt_adds == [] and eom.quarantine is None
    assert eom.summary["dry_run"] is True


def test_monitor_mode_discard_at_rcpt_keeps_the_recipient(tmp_path: Path) -> None:
    actions, eom = run(tmp_path, "a@good.example", ["dropped@x.example"], "hello", monitor=True)
    assert set(actions) == {Action.CONTINUE}
    assert added(eom)["X-ACLMilter-Dry-Run"].startswith(
        "would discard at rcpt (" + str(tmp_path / "monitor.yaml") + ":9)")
    assert "Authentication-Results" in added(eom)


def test_monitor_mode_data_refusal_is_named_at_data(tmp_path: Path) -> None:
    _actions, eom = run(tmp_path, "a@good.example", ["b@x.example"], "spam", monitor=True)
    assert added(eom)["X-ACLMilter-Dry-Run"] == \
        "would reject at data (" + str(tmp_path / "monitor.yaml") + ":13); would quarantine"


@pytest.mark.parametrize("monitor", [True, False])
def test_an_accepted_message_gets_the_same_headers_with_and_without_monitor_mode(tmp_path: Path,
                                                                                   monitor: bool) -> None:
    _actions, eom = run(tmp_path, "a@good.example", ["b@x.example"], "hello", monitor=monitor)
    headers = added(eom)
    assert headers.pop("X-ACLMilter-Dry-Run", None) == ("would accept; would quarantine" if monitor else None)
    assert headers == {"X-Mail-Seen": "a@good.example", "X-Data-Seen": "yes",
                       "Authentication-Results": "mx.test.example; dkim=none"}


def test_without_monitor_mode_the_refusals_are_given(tmp_path: Path) -> None:
    actions, eom = run(tmp_path, "a@good.example", ["gone@x.example", "b@x.example"], "spam", monitor=False)
    assert actions[-1] is Action.REJECT
    assert "Authentication-Results" not in added(eom)
