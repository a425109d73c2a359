# SPDX-License-Identifier: GPL-3.0-or-later
"""DCC scenarios through the real engine: `aclmilter test --json` against the fake dccifd."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness.fake_dccifd import Behaviour, FakeDccifd, header_of_size

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AC = str(Path(sys.executable).with_name("aclmilter"))
MESSAGE = b"From: alice@sender.example\r\nSubject: hello\r\n\r\nbody\r\n"

GREYLIST = """
settings:
  dccifd_address: "{address}"
  dcc_direct_add_header: true
acl:
  data:
    - defer:
        "!dcc": "{arg}"
        message: "451 4.7.1 Greylisted by DCC"
    - accept: {{}}
  deliver:
    - discard: {{dcc_rcpt: R}}
    - accept: {{}}
"""

TOLERANT = """
settings:
  dccifd_address: "{address}"
acl:
  data:
    - warn: {{dcc: "*/defer_ok"}}
    - defer:
        condition: "${{if eq{{$dcc_result}}{{G}}{{yes}}{{no}}}}"
        message: "451 4.7.1 Greylisted by DCC"
    - accept: {{}}
"""


@pytest.fixture
def fake() -> Iterator[FakeDccifd]:
    with FakeDccifd.tcp("127.0.0.1") as server:
        yield server


def session(policy: str, rcpts: tuple[str, ...] = ("x@ours.example", "y@ours.example")) -> dict:
    """Run one dry-run session; return the parsed JSON report."""
    with tempfile.TemporaryDirectory(prefix="dcccli") as d:
        pfile, mfile = Path(d) / "p.yaml", Path(d) / "m.eml"
        pfile.write_text(policy)
        mfile.write_bytes(MESSAGE)
        cmd = [AC, "test", "--policy", str(pfile), "--client-ip", "2001:db8::25", "--helo", "mx.sender.example",
               "--from", "alice@sender.example", "--message", str(mfile), "--json"]
        for r in rcpts:
            cmd += ["--rcpt", r]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def eom(report: dict) -> dict:
    [step] = [s for s in report["steps"] if s["stage"] == "eom"]
    return step


def greylist(address: str, arg: str = "*") -> str:
    return GREYLIST.format(address=address, arg=arg)


def test_greylist_g_is_a_4xx_with_the_policy_message(fake: FakeDccifd) -> None:
    fake.default = Behaviour("G")
    step = eom(session(greylist(fake.address)))
    assert step["action"] == "tempfail" and "451 4.7.1 Greylisted by DCC" in json.dumps(step["reply"])
    # The dry run asks with `query` so that it never counts as a report to the DCC network,
    # and with `grey-query` so that it starts no greylist embargo.
    assert fake.requests[0].options == ("header", "query", "grey-query")
    assert fake.requests[0].client == "2001:db8::25" and fake.requests[0].message == MESSAGE


def test_accept_adds_the_folded_x_dcc_header(fake: FakeDccifd) -> None:
    header = header_of_size(240)
    fake.default = Behaviour("A", header=header)
    report = session(greylist(fake.address))
    assert eom(report)["action"] == "continue"
    name, _, value = header.partition(": ")
    assert {"name": name, "value": value, "position": ":at_end:"} in report["edits"]["headers_added"]
    assert report["edits"]["recipients_deleted"] == []


def test_deliver_acl_drops_only_the_r_recipients(fake: FakeDccifd) -> None:
    fake.default = Behaviour("A", rcpts="RAR")
    report = session(greylist(fake.address), ("r1@ours.example", "a@ours.example", "r2@ours.example"))
    assert eom(report)["action"] == "continue"
    assert report["edits"]["recipients_deleted"] == ["<r1@ours.example>", "<r2@ours.example>"]
    assert fake.connections == 1


@pytest.mark.parametrize("arg", ["*", "*/defer_ok"])
def test_t_defers_even_with_defer_ok_under_negation(fake: FakeDccifd, arg: str) -> None:
    """Exim semantics: /defer_ok makes T false, and `!` turns that false into true -> defer."""
    fake.default = Behaviour("T")
    assert eom(session(greylist(fake.address, arg)))["action"] == "tempfail"


def test_t_with_defer_ok_passes_a_tolerant_policy(fake: FakeDccifd) -> None:
    fake.default = Behaviour("T")
    report = session(TOLERANT.format(address=fake.address))
    assert eom(report)["action"] == "continue"
    fake.default = Behaviour("G")
    assert eom(session(TOLERANT.format(address=fake.address)))["action"] == "tempfail"


def test_dccifd_down_tempfails_the_message() -> None:
    with FakeDccifd.tcp("127.0.0.1") as server:
        address = server.address
    report = session(greylist(address))
    assert eom(report)["action"] == "tempfail"
    assert report["edits"]["recipients_deleted"] == []
