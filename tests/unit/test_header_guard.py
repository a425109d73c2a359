# SPDX-License-Identifier: GPL-3.0-or-later
"""`aclmilter check` refuses add_header texts that duplicate a header the service writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aclmilter.errors import PolicyErrors
from aclmilter.policy.loader import load_file, load_text

ROOT = Path(__file__).resolve().parents[2]

WITH_ID = "settings:\n  authserv_id: mx.example.com\nacl:\n  data:\n    - warn:\n        add_header: {text}\n    - accept\n"
WITHOUT_ID = "acl:\n  data:\n    - warn:\n        add_header: {text}\n    - accept\n"


@pytest.mark.parametrize("text", [
    '"$dmarc_ar_header"',
    '":at_start:${dmarc_ar_header}"',
    '"Authentication-Results: mx.example.com; dmarc=pass header.from=example.org"',
    '"authentication-results: MX.Example.COM/123; spf=pass smtp.mailfrom=example.org"',
    '"X-One: a\\nAuthentication-Results: mx.example.com.; none"',
    # every spelling forged-header removal treats as ours (checks/authserv_id.py) is refused
    '"Authentication-Results: \\"mx.example.com\\"; none"',
    '"Authentication-Results: \\"MX.example.com.\\"; none"',
    '"Authentication-Results: (ours) mx.example.com; none"',
    '"Authentication-Results: (a (nested) one)\\"mx.example.com/7\\"(c); none"',
    '"Authentication-Results:\\n (folded)\\n mx.example.com.\\n ; none"',
    '"Authentication-Results: mx.example.com(comment); none"',
])
def test_our_authentication_results_is_refused_at_load(text):
    with pytest.raises(PolicyErrors) as exc:
        load_text(WITH_ID.format(text=text), "p.yaml")
    [err] = exc.value.errors
    message = str(err)
    assert message.startswith("p.yaml:6:") and "already added automatically" in message
    assert "mx.example.com" in message


@pytest.mark.parametrize("policy", [
    WITH_ID.format(text='"Authentication-Results: upstream.example.net; spf=pass smtp.mailfrom=a.example"'),
    WITH_ID.format(text='"X-DMARC: $dmarc_status"'),
    WITH_ID.format(text='"Authentication-Results: (mx.example.com) upstream.example.net; none"'),
    WITH_ID.format(text='"Authentication-Results: \\"mx.example.com x\\"; none"'),
    WITH_ID.format(text='"Authentication-Results: mx.example.com.evil; none"'),
    WITHOUT_ID.format(text='"$dmarc_ar_header"'),            # no automatic header: Exim's usage stands
])
def test_other_headers_load(policy):
    load_text(policy, "p.yaml")


def test_warn_message_counts_as_a_header():
    text = ("settings:\n  authserv_id: mx.example.com\nacl:\n  data:\n    - warn:\n"
            "        message: \"$dmarc_ar_header\"\n    - accept\n")
    with pytest.raises(PolicyErrors):
        load_text(text, "p.yaml")


@pytest.mark.parametrize("text,ok", [
    ('":at_start:$spf_received"', True),                   # the Exim idiom
    ('":at_start:X-SPF: $spf_received_value"', True),
    ('":at_start:Received-SPF: $spf_received"', False),    # would write Received-SPF: Received-SPF:
    ('"X-Mine: ${spf_received}"', False),
])
def test_spf_received_is_a_complete_header(text, ok):
    policy = f"acl:\n  mail:\n    - warn:\n        spf: \"*\"\n        add_header: {text}\n    - accept\n"
    if ok:
        load_text(policy, "p.yaml")
    else:
        with pytest.raises(PolicyErrors) as exc:
            load_text(policy, "p.yaml")
        assert "$spf_received is already a complete header" in str(exc.value.errors[0])


def test_shipped_policies_pass_aclmilter_check():
    """The examples were fixed: the DMARC one no longer adds $dmarc_ar_header next to the
    automatic header, the SPF ones use $spf_received as the complete header."""
    paths = [ROOT / "policies" / "default.yaml", *sorted((ROOT / "policies" / "examples").glob("*.yaml"))]
    out = subprocess.run([sys.executable, "-m", "aclmilter.cli", "check", "-q", *map(str, paths)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    dmarc = load_file(ROOT / "policies" / "examples" / "dmarc.yaml")
    assert dmarc.settings["authserv_id"]
