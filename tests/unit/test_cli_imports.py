# SPDX-License-Identifier: GPL-3.0-or-later
"""`aclmilter check` and `aclmilter test` import only what they need (issue 23): no
dnspython, redis-py, dkimpy, pyspf, asyncio or the service to check a policy, nor to dry-run
one whose checks ask no DNS (a dry run of a policy that does imports what its checks use).
Nor the standard modules only a message's processing needs (OpenSSL's hashlib, the email
package, sockets, ...), nor the implementation of a feature the policy does not use (lazy.py).
Start-up *time* is measured in bench/RESULTS.md (bench/cli_startup.py), never here; this
pins the imports, so a module-level import that brings one back fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "policies" / "default.yaml"
NO_DNS = ROOT / "bench" / "bench-policy.yaml"     # a policy whose checks ask no DNS
HEAVY = ("dns", "redis", "dkim", "spf", "authres", "asyncio", "publicsuffix2", "smtplib",
         "milter", "prometheus_client", "aclmilter.service.cli_serve",
         # standard modules a message's processing may need, a start-up not (each 1-10 ms)
         "hashlib", "hmac", "idna", "email", "uuid", "socket", "ssl", "tempfile", "json", "signal",
         "concurrent",
         # the service and the commands that are not these two
         "aclmilter.service", "aclmilter.regdoc", "aclmilter.docgen", "aclmilter.eximimport",
         "aclmilter.bh",
         # implementations of features default.yaml and the bench policy do not use: imported
         # when a policy uses them (their registry entries are always there)
         "aclmilter.clients.dccifd", "aclmilter.checks.dcc", "aclmilter.checks.dnslists",
         "aclmilter.checks.ratelimit", "aclmilter.clients.redis", "aclmilter.clients.rspamd",
         "aclmilter.clients.spamd", "aclmilter.clients.dns_early", "aclmilter.checks.proxy",
         "aclmilter.checks.scan", "aclmilter.clients.scan")
#: what only a dry run needs: `check` validates without building a runtime or a session
DRY_RUN = ("aclmilter.runtime", "aclmilter.session", "aclmilter.engine", "aclmilter.dryrun",
           "aclmilter.eom", "aclmilter.early")


#: runs the command as the console script does, then lists sys.modules. (`-X importtime` does
#: not see modules loaded through importlib.import_module, which lazy.py and the feature
#: registry use: the list of sys.modules sees every module however it was loaded.)
PROBE = """import sys
from aclmilter.cli import main
try:
    rc = main(sys.argv[1:])
finally:
    print("MODULES " + " ".join(sorted(sys.modules)), file=sys.stderr)
sys.exit(rc)
"""


def _imported(*args: str) -> set[str]:
    """Every module a fresh interpreter had imported when `aclmilter ARGS` finished."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("MODULES ")]
    assert len(lines) == 1, proc.stderr[-2000:]
    names = set(lines[0].split()[1:])
    assert "aclmilter.policy.loader" in names      # the probe really saw the imports
    return names


def _heavy(names: set[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in heavy))


@pytest.mark.parametrize("args, heavy", [
    (("check", str(DEFAULT)), HEAVY + DRY_RUN),
    (("test", "--policy", str(NO_DNS), "--client-ip", "192.0.2.1", "--from", "a@example.org",
      "--rcpt", "b@example.net"), HEAVY),
])
def test_command_does_not_import_what_it_does_not_use(args: tuple[str, ...], heavy: tuple[str, ...]) -> None:
    assert _heavy(_imported(*args), heavy) == []


def test_the_probe_sees_a_feature_implementation_a_policy_uses(tmp_path: Path) -> None:
    # the lazily imported implementations do load when the policy needs them: a ratelimit
    # condition's argument is parsed by checks/ratelimit.py at load
    policy = tmp_path / "p.yaml"
    policy.write_text("acl:\n  rcpt:\n    - deny:\n        ratelimit: 100 / 1h / per_rcpt\n    - accept\n")
    assert _heavy(_imported("check", str(policy))) == ["aclmilter.checks.ratelimit"]


def test_serve_still_offers_its_arguments() -> None:
    proc = subprocess.run([sys.executable, "-m", "aclmilter.cli", "serve", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and "--socket" in proc.stdout
