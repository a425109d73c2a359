"""Monitor mode keeps the headers of features that talk to a dependency: X-DCC from a real
dccifd-protocol server is added although the DATA ACL would have refused the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from aclmilter.runtime import Runtime
from aclmilter.session import Action, Session
from tests.harness.fake_dccifd import FakeDccifd

pytestmark = pytest.mark.integration

POLICY = """\
settings:
  dccifd_address: "{address}"
  dcc_direct_add_header: true
acl:
  data:
    - warn: {{dcc: "*/defer_ok"}}
    - deny: {{message: "550 5.7.1 no"}}
"""


@pytest.mark.parametrize("monitor", [True, False])
def test_x_dcc_is_added_in_monitor_mode_only_when_not_refusing(tmp_path: Path, monitor: bool) -> None:
    with FakeDccifd.tcp("127.0.0.1") as fake:
        path = tmp_path / "p.yaml"
        path.write_text(POLICY.format(address=fake.address))
        rt = Runtime(path, monitor=monitor)
        rt.load()
        s = Session(rt)
        s.connect("mx.sender.example", "inet", "192.0.2.25", 4000, {})
        s.helo("mx.sender.example", {})
        s.mail("<a@sender.example>", [], {})
        s.rcpt("<b@ours.example>", [], {})
        s.data({})
        s.header("From", "a@sender.example")
        s.body(b"body\r\n")
        eom = s.eom({"i": "Q1"})
        added = {a.name: a.value for a in eom.edits.header_adds}
        assert len(fake.requests) == 1
        if monitor:
            assert eom.response.action is Action.CONTINUE
            assert added["X-DCC-FAKE-Metrics"].startswith("mx.fake.example 1234;")
            assert added["X-ACLMilter-Dry-Run"] == f"would reject at data ({path}:7)"
        else:
            assert eom.response.action is Action.REJECT
            assert "X-DCC-FAKE-Metrics" not in added
