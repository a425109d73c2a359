# SPDX-License-Identifier: GPL-3.0-or-later
"""event_action in the session: which events fire with what data, connection refusal, load checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from aclmilter.errors import PolicyErrors
from aclmilter.policy.needs import analyse
from aclmilter.runtime import Runtime
from aclmilter.session import Action, Session

POLICY = """
settings:
  event_action: "${if match{$event_name}{^(tcp|smtp):connect}{${if eq{$sender_host_address}{192.0.2.66}{refused}}}{[$event_name|$event_data]}}"
acl:
  rcpt:
    - deny: {local_parts: nobody, message: "550 5.1.1 no such user"}
    - defer: {local_parts: later, message: "451 4.3.2 try later"}
    - accept
  data:
    - deny: {condition: "${if eq{$h_subject:}{spam}}", message: "550 5.7.1 spam"}
    - accept
"""


class Recorder(Session):
    """Records each event's expansion result (the events themselves run unchanged)."""

    seen: list[str]

    def _event(self, name, data="", stage=None, rcpt=None):
        kw = {} if stage is None else {"stage": stage}
        result = super()._event(name, data, rcpt=rcpt, **kw)
        self.seen.append(f"{name}|{data}|{result}")
        return result


def _session(tmp_path: Path, policy: str = POLICY) -> Recorder:
    path = tmp_path / "p.yaml"
    path.write_text(policy)
    rt = Runtime(path, monitor=False)
    rt.load()
    s = Recorder(rt)
    s.seen = []
    return s


def test_events_fire_with_their_data(tmp_path: Path) -> None:
    s = _session(tmp_path)
    assert s.connect("[192.0.2.1]", "inet", "192.0.2.1", 4000, {}).action is Action.CONTINUE
    s.helo("client.example", {})
    s.mail("<a@example.com>", [], {})
    assert s.rcpt("<nobody@example.org>", [], {}).action is Action.REJECT
    assert s.rcpt("<later@example.org>", [], {}).action is Action.TEMPFAIL
    assert s.rcpt("<bob@example.org>", [], {}).action is Action.CONTINUE
    s.data({})
    s.header("Subject", "spam")
    assert s.eom({}).response.action is Action.REJECT
    names = [e.split("|")[0] for e in s.seen]
    assert names == ["tcp:connect", "smtp:connect", "msg:rcpt:reject", "msg:rcpt:defer", "msg:reject",
                     "msg:complete"]
    assert "msg:rcpt:reject|550 5.1.1 no such user|" in s.seen[2]
    assert s.seen[-1].startswith("msg:complete|reject|")
    # results are the expansion's (ignored but for the connect events)
    assert s.seen[0] == "tcp:connect||" and s.seen[2].endswith("|[msg:rcpt:reject|550 5.1.1 no such user]")


def test_non_empty_result_at_connect_refuses_and_drops(tmp_path: Path) -> None:
    s = _session(tmp_path, POLICY.replace('[$event_name|$event_data]', ''))
    r = s.connect("[192.0.2.66]", "inet", "192.0.2.66", 4000, {})
    assert r.action is Action.REJECT and r.drop
    assert s.seen == ["tcp:connect||refused"]
    s.seen.clear()
    r = s.connect("[192.0.2.1]", "inet", "192.0.2.1", 4000, {})
    assert r.action is Action.CONTINUE
    s.mail("<a@example.com>", [], {})
    s.rcpt("<bob@example.org>", [], {})
    assert s.eom({}).response.action is Action.CONTINUE
    assert s.seen == ["tcp:connect||", "smtp:connect||", "msg:complete|accept|"]


def test_connect_is_answered_when_event_action_is_set(tmp_path: Path) -> None:
    s = _session(tmp_path)
    assert "connect" in analyse(s.policy).replies


@pytest.mark.parametrize("action,message", [
    ("${lookup redis{$event_name x}}", "command word of a query must be fixed text"),
    ("${lookup redis{XADD$event_name x}}", "command word of a query must be fixed text"),
    ("${lookup redis{FLUSHALL}}", "not allowed"),
    ("$no_such_variable", "unknown variable"),
])
def test_event_action_load_errors(tmp_path: Path, action: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f'settings:\n  redis_servers: ["127.0.0.1"]\n  event_action: "{action}"\n')
    with pytest.raises(PolicyErrors) as exc:
        Runtime(path).load()
    text = "\n".join(map(str, exc.value.errors))
    assert message in text and "p.yaml:3" in text


def test_a_held_refusal_is_reported_once(tmp_path: Path) -> None:
    from aclmilter.actions import Reply
    from aclmilter.session import HeldRefusal, Response
    s = _session(tmp_path)
    s.connect("[192.0.2.1]", "inet", "192.0.2.1", 4000, {})
    s.mail("<a@example.com>", [], {})
    s.rcpt("<bob@example.org>", [], {})
    s.seen.clear()
    held = HeldRefusal("mail", Response(Action.TEMPFAIL, Reply(451, "4.3.0", ("later",))), "p.yaml:1")
    assert s.eom({}, held).response.action is Action.TEMPFAIL
    assert [e.split("|")[0] for e in s.seen] == ["msg:complete"]
