# SPDX-License-Identifier: GPL-3.0-or-later
"""`aclmilter check`, `serve` and a SIGUSR1 reload answer hostile policy files with
file:line:column lines, never a traceback (issue 24, point 3), in real processes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.aclmilterd import AclMilterd, aclmilter_binary
from tests.harness.milterclient import MilterClient
from tests.harness.postfix import world_traversable_dir

pytestmark = pytest.mark.integration

GOOD = "acl:\n  rcpt:\n    - accept\n"
HOSTILE = {
    "complex-key.yaml": b"settings:\n  dkim_max_signatures:\n    ? {a: 1}\n    : 1\nacl: {}\n",
    "recursive.yaml": b"settings:\n  dmarc_tld_file: &x [*x]\n",
    "inf.yaml": b"settings:\n  dkim_max_signatures: .inf\n  spf_result_cache_ttl: -.inf\n",
    "huge.yaml": b"settings:\n  dkim_max_signatures: " + b"9" * 5000 + b"\n",
    "tag.yaml": b"settings:\n  primary_hostname: !!python/object:os.system x\n",
    "nesting.yaml": b"acl:\n  rcpt: " + b"[" * 3000 + b"]" * 3000 + b"\n",
    "latin1.yaml": b"settings:\n  primary_hostname: caf\xe9\n",
}
POSITIONED = re.compile(r"^\S+:\d+:\d+: \S")


def _files(where: Path) -> list[Path]:
    out = []
    for name, data in HOSTILE.items():
        (where / name).write_bytes(data)
        out.append(where / name)
    return out


def test_check_reports_every_hostile_file_with_positions(tmp_path):
    files = _files(tmp_path)
    proc = subprocess.run([aclmilter_binary(), "check", *map(str, files)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    for f in files:
        assert f"{f}: " in proc.stderr and any(ln.startswith(f"{f}:") and POSITIONED.match(ln) for ln in lines), f
    assert all(POSITIONED.match(ln) or ln.endswith("policy refused") for ln in lines), lines


@pytest.mark.parametrize("name", ["recursive.yaml", "inf.yaml", "latin1.yaml"])
def test_serve_refuses_to_start_without_a_traceback(tmp_path, name):
    [policy] = [f for f in _files(tmp_path) if f.name == name]
    proc = subprocess.run([aclmilter_binary(), "serve", "--policy", str(policy), "--socket",
                           f"unix:{tmp_path / 'sock'}"], capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert re.search(rf"{re.escape(str(policy))}:\d+:\d+: ", out) and "policy refused" in out, out


def test_reload_of_hostile_files_is_refused_and_service_goes_on():
    work = world_traversable_dir("aclm-reload-")
    policy = work / "policy.yaml"
    policy.write_text(GOOD)
    with AclMilterd(policy, workdir=work) as daemon:
        for n, data in enumerate(HOSTILE.values(), start=1):
            policy.write_bytes(data)
            daemon.reload()
            daemon.wait_log(r"reload refused \(\d+ error", count=n)
        log = daemon.log()
        assert "Traceback" not in log and "handling signal" not in log, log[-3000:]
        assert re.search(rf"reload refused: {re.escape(str(policy))}:\d+:\d+: ", log)
        with MilterClient(daemon.client_spec, timeout=30) as client:     # the old policy still serves
            answer = client.connect("client.example.org", "4", 4711, "192.0.2.7")
        assert answer.action == "continue", answer
        policy.write_text(GOOD)
        daemon.reload()
        daemon.wait_log(r"reloaded \(generation 2\)")
