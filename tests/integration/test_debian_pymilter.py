"""Debian's python3-milter hands envelope values to Python the way the glue assumes (issue 24
point 5): MAIL arguments as bytes, and a HELO that is not UTF-8 as a decode error whose bytes
reach aclmilter's hook (service/undecodable.py) instead of the callback.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.milterclient import MilterClient
from tests.harness.procs import free_port, stop_pid, wait_port

pytestmark = pytest.mark.integration

PROBE = Path(__file__).resolve().parent.parent / "fixtures" / "pymilter" / "probe_milter.py"
DEBIAN_PYTHON = "/usr/bin/python3"


def test_debian_python3_milter_values(tmp_path: Path) -> None:
    check = subprocess.run([DEBIAN_PYTHON, "-c", "import milter; print(milter.__file__)"],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and check.stdout.startswith("/usr/lib/python3/dist-packages/"), \
        "Debian's python3-milter is missing: run scripts/setup.sh deps test"
    port = free_port()
    out = tmp_path / "probe.log"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([DEBIAN_PYTHON, str(PROBE), f"inet:{port}@127.0.0.1"], stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port("127.0.0.1", port, 20, proc)
        with MilterClient(f"inet:127.0.0.1:{port}", timeout=10) as mc:
            mc.connect("[203.0.113.7]", "4", 4711, "203.0.113.7")
            mc.helo(b"bad\xff.example")
            mc.helo(b"ok.example")
            mc.mail(b"<a\xff@example.org>")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "mail " not in out.read_text():
            time.sleep(0.05)
    finally:
        stop_pid(proc.pid)
        proc.wait(timeout=10)
    lines = out.read_text().splitlines()
    assert "hook b'bad\\xff.example'" in lines, lines
    assert "helo 'ok.example'" in lines, lines
    assert "mail (b'<a\\xff@example.org>',)" in lines, lines
