# SPDX-License-Identifier: GPL-3.0-or-later
"""policies/default.yaml as shipped (only `settings.dns` pointed at a loopback Knot), through
`aclmilter test --json`: a message whose From field does not name exactly one author domain
is refused at end of data (RFC 5322 §3.6, RFC 7489 §6.6.1); every other message is accepted,
and no DMARC record is looked up for either.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HEAD = "To: bob@receiver.test\r\nSubject: s\r\nMessage-ID: <1@spf.test>\r\nDate: Mon, 7 Dec 2026 04:00:00 +0000\r\n"


@pytest.fixture(scope="module")
def policy(knot_dns, tmp_path_factory):
    doc = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text())
    doc["settings"]["dns"] = knot_dns.settings(timeout=2, lifetime=4, budget=10)
    doc["settings"]["primary_hostname"] = "mx.receiver.test"
    path = tmp_path_factory.mktemp("defaultpolicy") / "default.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def eom(policy: Path, tmp_path: Path, from_lines: str) -> dict:
    msg = tmp_path / "m.eml"
    msg.write_bytes((from_lines + HEAD + "\r\nbody\r\n").encode())
    exe = Path(sys.executable).parent / "aclmilter"
    out = subprocess.run([str(exe), "test", "--policy", str(policy), "--client-ip", "192.0.2.1",
                          "--from", "alice@pass.spf.test", "--helo", "mx.spf.test",
                          "--rcpt", "bob@receiver.test", "--message", str(msg), "--json"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    return next(s for s in report["steps"] if s["stage"] == "eom")


@pytest.mark.parametrize("from_lines, why", [
    ("", "no From"),
    ("From: a@one.example\r\nFrom: b@two.example\r\n", "two From fields"),
    ("From: undisclosed:;\r\n", "an empty group"),
    ("From: a@b.example <c@d.example>\r\n", "a field that reads two ways"),
])
def test_no_single_author_domain_is_refused(policy, tmp_path, from_lines, why):
    step = eom(policy, tmp_path, from_lines)
    assert step["action"] == "reject", (why, step)
    assert step["reply"].startswith("550 5.7.1 Message refused: the From field must name one author: "), step


@pytest.mark.parametrize("from_lines", [
    "From: Alice <alice@pass.spf.test>\r\n",
    "From: Support <jösé@forged.example>\r\n",            # RFC 6532 local part: one author domain
    "From: a@x.example, b@y.example\r\nSender: a@x.example\r\n",   # two mailboxes, each with a domain
])
def test_one_or_more_author_domains_are_accepted(policy, tmp_path, from_lines):
    step = eom(policy, tmp_path, from_lines)
    assert step["action"] == "continue", step
