"""`aclmilter serve` operations: it says clearly why it cannot listen (service/preflight.py)
instead of libmilter's bare "cannot opensocket", never takes over a socket another process
serves, and writes its message lines as JSON with `--log-format json`."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

AC = str(Path(sys.executable).with_name("aclmilter"))


def _serve(tmp_path: Path, socket_spec: str) -> subprocess.CompletedProcess:
    policy = tmp_path / "p.yaml"
    policy.write_text("acl: {}\n")
    return subprocess.run([AC, "serve", "--policy", str(policy), "--socket", socket_spec],
                          capture_output=True, text=True, timeout=60)


def test_missing_socket_directory_is_named(tmp_path: Path) -> None:
    proc = _serve(tmp_path, f"unix:{tmp_path}/nowhere/aclmilter.sock")
    assert proc.returncode == 3
    assert f"socket directory {tmp_path}/nowhere does not exist" in proc.stderr


def test_socket_path_in_use_is_named_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "busy.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    try:
        proc = _serve(tmp_path, f"unix:{path}")
        assert proc.returncode == 3
        assert f"socket path {path} is in use" in proc.stderr
        assert path.exists()              # the other listener's socket was not removed
    finally:
        listener.close()


def test_port_in_use_is_named(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        proc = _serve(tmp_path, f"inet:{port}@127.0.0.1")
        assert proc.returncode == 3
        assert f"port {port} on 127.0.0.1 is in use" in proc.stderr
    finally:
        listener.close()


def test_log_format_json_writes_one_object_per_message(tmp_path: Path) -> None:
    import json

    from tests.harness.aclmilterd import AclMilterd
    from tests.harness.milterclient import MilterClient

    policy = tmp_path / "p.yaml"
    policy.write_text("acl:\n  rcpt:\n    - deny: {local_parts: no, message: \"550 5.7.1 no thanks\"}\n"
                      "    - accept\n")
    with AclMilterd(policy, "inet", extra_args=["--log-format", "json"]) as d:
        with MilterClient(d.client_spec) as mc:
            mc.connect("[203.0.113.7]", "4", 4711, "203.0.113.7")
            mc.helo("client.example")
            mc.mail("<a@example.org>")
            assert mc.rcpt("<no@example.test>").refused
            assert not mc.rcpt("<yes@example.test>").refused
            mc.data({"i": "QJSON1"})
            mc.header("Subject", "hi")
            mc.eoh()
            mc.body(b"hello\r\n")
            assert mc.eom({"i": "QJSON1"}).action in ("continue", "accept")
        [line] = d.wait_log(r'\{"qid":"QJSON1"[^\n]*')
    rec = json.loads(line)
    assert rec["decision"] == "accept" and rec["to"] == ["yes@example.test"]
    assert rec["where"] == f"{policy}:4" and rec["spf"] == "-" and rec["prx"] == "-"
