# SPDX-License-Identifier: GPL-3.0-or-later
"""`aclmilter check` and `aclmilter test` import only what they need (issue 23): no
dnspython, redis-py, dkimpy, pyspf, asyncio or the service to check a policy, nor to dry-run
one whose checks ask no DNS (a dry run of a policy that does imports what its checks use).
Start-up *time* is measured in bench/RESULTS.md, never here; this proves the imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "policies" / "default.yaml"
NO_DNS = ROOT / "bench" / "bench-policy.yaml"     # a policy whose checks ask no DNS
HEAVY = ("dns", "redis", "dkim", "spf", "authres", "asyncio", "publicsuffix2", "smtplib",
         "milter", "prometheus_client", "aclmilter.service.cli_serve")


def _imported(*args: str) -> set[str]:
    """Top-level module names a fresh interpreter imported running `aclmilter ARGS`."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "aclmilter.cli", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "aclmilter.policy.loader" in names      # the probe really saw the imports
    return names


def _heavy(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("args", [
    ("check", str(DEFAULT)),
    ("test", "--policy", str(NO_DNS), "--client-ip", "192.0.2.1", "--from", "a@example.org",
     "--rcpt", "b@example.net"),
])
def test_command_does_not_import_what_it_does_not_use(args: tuple[str, ...]) -> None:
    assert _heavy(_imported(*args)) == []


def test_serve_still_offers_its_arguments() -> None:
    proc = subprocess.run([sys.executable, "-m", "aclmilter.cli", "serve", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and "--socket" in proc.stdout
