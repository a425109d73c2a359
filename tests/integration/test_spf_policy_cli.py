# SPDX-License-Identifier: GPL-3.0-or-later
"""policies/examples/spf.yaml through `aclmilter test --json`, with DNS answered by Knot.

The policy's ACLs are used as shipped; only `settings.dns` is pointed at the test server and
the seed's `aol.com` is replaced by `neutral.spf.test` (a test domain whose record ends in
`?all`, exactly AOL's situation in the seed's example).
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
EXAMPLE = ROOT / "policies" / "examples" / "spf.yaml"
SPF_VARIABLES = ("spf_result", "spf_header_comment", "spf_received", "spf_smtp_comment", "spf_result_guessed")


@pytest.fixture(scope="module")
def policy(knot_dns, tmp_path_factory):
    doc = yaml.safe_load(EXAMPLE.read_text().replace("aol.com", "neutral.spf.test"))
    doc["settings"]["dns"] = knot_dns.settings(timeout=2, lifetime=4, budget=10)
    doc["settings"]["primary_hostname"] = "mx.receiver.test"
    path = tmp_path_factory.mktemp("spfpolicy") / "spf.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def dry_run(policy: Path, ip: str, sender: str, helo: str = "client.example.invalid") -> dict:
    exe = Path(sys.executable).parent / "aclmilter"
    assert exe.exists(), "install the package: .venv/bin/pip install -e ."
    out = subprocess.run([str(exe), "test", "--policy", str(policy), "--client-ip", ip, "--from", sender,
                          "--helo", helo, "--rcpt", "user@receiver.test", "--json"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def mail_step(report: dict) -> dict:
    return next(s for s in report["steps"] if s["stage"] == "mail")


def variables(report: dict) -> dict:
    stage = next(r for r in report["stages"] if r["stage"] == "mail")
    return stage["variables"]


def test_forged_sender_is_rejected_with_the_seed_message(policy):
    report = dry_run(policy, "198.51.100.7", "bob@strict.spf.test")
    step = mail_step(report)
    assert step["action"] == "reject"
    assert ("198.51.100.7 is not allowed to send mail from strict.spf.test. Please see "
            "http://www.open-spf.org/Why?scope=mfrom;identity=bob@strict.spf.test;ip=198.51.100.7") in step["reply"]
    assert variables(report)["spf_result"] == "fail"


def test_null_sender_message_names_the_helo(policy):
    report = dry_run(policy, "198.51.100.26", "", helo="helo.spf.test")
    step = mail_step(report)
    assert step["action"] == "reject"
    assert "not allowed to send mail from helo.spf.test." in step["reply"]
    assert "scope=helo;identity=helo.spf.test;" in step["reply"]


def test_neutral_is_fail_only_for_the_named_domain(policy):
    # neutral.spf.test stands in for aol.com: its neutral is refused with the AOL text ...
    report = dry_run(policy, "198.51.100.7", "a@neutral.spf.test")
    assert mail_step(report)["action"] == "reject"
    assert "AOL sender, but not from AOL-approved relay." in mail_step(report)["reply"]
    # ... while a neutral from another domain passes
    other = dry_run(policy, "198.51.100.7", "a@soft.spf.test")          # softfail: not denied
    assert mail_step(other)["action"] == "continue"


def test_pass_gets_received_spf_at_the_top(policy):
    report = dry_run(policy, "192.0.2.7", "alice@strict.spf.test")
    assert mail_step(report)["action"] == "continue"
    added = report["edits"]["headers_added"]
    first = added[0]
    assert first["name"] == "Received-SPF" and first["position"] == ":at_start:"
    assert first["value"].startswith("pass (mx.receiver.test: domain of alice@strict.spf.test designates")
    values = variables(report)
    for name in SPF_VARIABLES:
        assert name in values
    assert values["spf_result"] == "pass" and values["spf_result_guessed"] == ""


def test_best_guess_header_and_reply(policy):
    report = dry_run(policy, "192.0.2.77", "a@nospf.spf.test")
    assert mail_step(report)["action"] == "continue"
    added = report["edits"]["headers_added"]
    assert added[0]["name"] == "X-SPF-Guess" and added[0]["value"].startswith("pass (")
    assert variables(report)["spf_result_guessed"] == "1"
