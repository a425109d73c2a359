# SPDX-License-Identifier: GPL-3.0-or-later
"""Real Exim, unpacked (never installed) by `scripts/setup.sh` (`exim_unpack`), for comparisons.

`exim_root()` is the unpack directory (`/var/cache/aclmilter-test/exim`, or
$ACLMILTER_EXIM_DIR); a missing binary fails the test, never skips it.

`expand_batch(texts, tmp, config_extra)` runs one `exim -C cfg -be` for many expansion
strings (one process per batch keeps the suite fast) and returns, per text, either
("ok", result) or ("fail", Exim's message). The minimal configuration keeps spool and log in
`tmp`; `config_extra` is appended to its main section (a `begin acl` section may follow).
`run_exim(args, stdin, tmp, config_extra)` runs any other mode (`-bh` sessions) the same way.
Exim must run as root to accept `-C` with a private configuration.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Sequence

import pytest

DEFAULT_ROOT = "/var/cache/aclmilter-test/exim"
#: Each expansion is prefixed with this marker (\x01 index \x02) to find results in the output.
_START = re.compile(r"^> \x01(\d+)\x02", re.M)


def exim_root() -> Path:
    """The directory Exim's package was unpacked into; fails the test when it is not there."""
    root = Path(os.environ.get("ACLMILTER_EXIM_DIR", DEFAULT_ROOT))
    if not (root / "usr/sbin/exim4").is_file():
        pytest.fail(f"Exim is not unpacked in {root}: run scripts/setup.sh deps test "
                    "(tests never skip a missing component)")
    return root


def _config(tmp: Path, extra: str) -> Path:
    (tmp / "spool").mkdir(exist_ok=True)
    (tmp / "log").mkdir(exist_ok=True)
    cfg = tmp / "exim.conf"
    cfg.write_text(f"primary_hostname = test.example\nspool_directory = {tmp}/spool\n"
                   f"log_file_path = {tmp}/log/%slog\nexim_user = root\nexim_group = root\n"
                   f"never_users =\n{extra}\n")
    return cfg


def run_exim(args: Sequence[str], stdin: bytes, tmp: Path, config_extra: str = "",
             timeout: float = 60.0) -> str:
    """Run the unpacked Exim with a private minimal configuration; returns its stdout."""
    if os.geteuid() != 0:
        pytest.fail("exim -C with a private configuration needs root")
    root = exim_root()
    cfg = _config(tmp, config_extra)
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(root / "usr/lib/x86_64-linux-gnu"), "LANG": "C.UTF-8"}
    proc = subprocess.run([str(root / "usr/sbin/exim4"), "-C", str(cfg), *args], input=stdin,
                          capture_output=True, env=env, timeout=timeout, check=False)
    return proc.stdout.decode("utf-8", "surrogateescape")


def expand_batch(texts: Sequence[str], tmp: Path, config_extra: str = "",
                 timeout: float = 60.0) -> list[tuple[str, str]]:
    """Expand every text with real Exim in one process; see the module docstring."""
    for t in texts:
        if "\n" in t or t.endswith("\\"):
            raise ValueError(f"exim -be reads one line per expansion: {t!r}")
    lines = "".join(f"\\x01{i}\\x02{t}\n" for i, t in enumerate(texts))
    return _parse(run_exim(["-be"], lines.encode(), tmp, config_extra, timeout), len(texts))


def _parse(out: str, count: int) -> list[tuple[str, str]]:
    """Split `exim -be` output into one record per input line, in order.

    A success is "> " + marker + result (which may span lines); a failure is a
    "> Failed: ..." line (Exim drops the marker with the text) for the next index.
    """
    results: list[tuple[str, str]] = []
    next_record = re.compile(r"\n> (?:\x01\d+\x02|Failed: |\n?\Z)")
    pos = 0
    for _ in range(count):
        m = _START.match(out, pos)
        if m is not None and int(m.group(1)) == len(results):
            nxt = next_record.search(out, m.end())
            end = nxt.start() if nxt else len(out)
            results.append(("ok", out[m.end():end]))
            pos = end + 1
            continue
        if out.startswith("> Failed: ", pos):
            end = out.find("\n", pos)
            end = len(out) if end < 0 else end
            results.append(("fail", out[pos + 10:end]))
            pos = end + 1
            continue
        raise AssertionError(f"cannot read exim -be output at record {len(results)}: "
                             f"{out[pos:pos + 200]!r}")
    return results
