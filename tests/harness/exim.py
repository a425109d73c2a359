"""Real Exim as a test oracle: `exim -bh` and `exim -be` from Debian's unpacked packages.

exim4-daemon-heavy conflicts with Postfix, so it is never installed: `scripts/setup.sh test`
(function `exim_unpack`) unpacks its .debs with `dpkg -x` into EXIM_DIR
(/var/cache/aclmilter-test/exim, or $ACLMILTER_EXIM_DIR). A missing tree fails the test.

`exim -bh IP` runs a fake SMTP session on standard input and writes the replies to standard
output (log lines and the ACL trace go to standard error). Exim runs as root here with
`-C config`, so the configuration names a spool directory and log path in a temporary
directory and `exim_user`/`exim_group` root: nothing touches /var/spool/exim4.

`expand_batch(texts, tmp, config_extra)` runs one `exim -C cfg -be` for many expansion
strings (one process per batch keeps the suite fast) and returns, per text, either
("ok", result) or ("fail", Exim's message). `run_exim(args, stdin, tmp, config_extra)` runs
any other mode the same way; `config_extra` is appended to the main section (a `begin acl`
section may follow).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytest

from .knot import knot_config, zone_files
from .procs import require_binary, running

EXIM_DIR = Path(os.environ.get("ACLMILTER_EXIM_DIR", "/var/cache/aclmilter-test/exim"))
#: Debian's stock split configuration (from exim4-config).
STOCK_CONF_D = EXIM_DIR / "etc" / "exim4" / "conf.d"


def exim_binary() -> Path:
    """The unpacked exim4 binary; fails (never skips) when scripts/setup.sh has not run."""
    path = EXIM_DIR / "usr" / "sbin" / "exim4"
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run scripts/setup.sh test (function exim_unpack); "
                    "tests never skip a missing component")
    if os.geteuid() != 0:
        pytest.fail("exim -bh with -C needs root (the tests run as root in CI)")
    return path


def exim_env() -> dict[str, str]:
    """Environment that lets the unpacked binary find the unpacked libidn12."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(EXIM_DIR / "usr" / "lib" / "x86_64-linux-gnu")
    return env


def main_options(workdir: Path, hostname: str = "mx.test") -> str:
    """The main options every test configuration starts with: private spool and log."""
    (workdir / "spool").mkdir(parents=True, exist_ok=True)
    (workdir / "log").mkdir(parents=True, exist_ok=True)
    return (f"exim_user = root\nexim_group = root\nspool_directory = {workdir}/spool\n"
            f"log_file_path = {workdir}/log/%slog\nprimary_hostname = {hostname}\n"
            "smtp_banner = $smtp_active_hostname ESMTP\n")


@dataclass
class BhRun:
    replies: list[str]      # every reply line, banner first, as the client reads it
    log: str                # standard error: LOG: lines and the debug trace


def run_bh(config: Path, client_ip: str, dialogue: str, timeout: float = 60.0,
           resolv_conf: Path | None = None) -> BhRun:
    """Run `exim -bh client_ip` with `-C config` on the dialogue (LF or CRLF lines).

    Exim asks the resolvers of /etc/resolv.conf (port 53, no option to change it): with
    `resolv_conf`, it runs in a private mount namespace where that file is bind-mounted
    over /etc/resolv.conf (see `dns53`), so its DNS goes to a test server on loopback.
    """
    text = dialogue.replace("\r\n", "\n").replace("\n", "\r\n")
    cmd = [str(exim_binary()), "-C", str(config), "-bh", client_ip]
    if resolv_conf is not None:
        cmd = [require_binary("unshare"), "-m", "sh", "-c",
               'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv_conf), *cmd]
    proc = subprocess.run(cmd,
                          input=text.encode(), capture_output=True, timeout=timeout, env=exim_env())
    out = proc.stdout.decode("utf-8", "replace")
    replies = [line for line in out.replace("\r\n", "\n").split("\n")
               if len(line) >= 3 and line[:3].isdigit()]
    return BhRun(replies, proc.stderr.decode("utf-8", "replace"))


@dataclass(frozen=True)
class Dns53:
    """Knot serving the test zones on port 53 of a loopback address, and a resolv.conf naming it."""

    address: str
    resolv_conf: Path

    @property
    def nameserver(self) -> str:
        return f"{self.address}:53"


@pytest.fixture(scope="module")
def dns53(tmp_path_factory: pytest.TempPathFactory):
    """knotd on <random 127.53.x.y>:53 (Exim's resolver cannot use another port) with every
    tests/fixtures/dns/zones file; stopped by PID at the end of the module."""
    import random
    knotd = require_binary("knotd")
    rundir = tmp_path_factory.mktemp("knot53")
    (rundir / "db").mkdir()
    address = f"127.53.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    zones = zone_files()
    conf = rundir / "knot.conf"
    text = knot_config(rundir, 53, zones)
    conf.write_text(text.replace("listen: [ 127.0.0.1@53, ::1@53 ]", f"listen: [ {address}@53 ]"))
    resolv = rundir / "resolv.conf"
    resolv.write_text(f"nameserver {address}\noptions timeout:2 attempts:1\n")
    log = rundir / "knotd.log"
    with running([knotd, "-c", str(conf)], log) as proc:
        _wait(address, zones, proc, log)
        yield Dns53(address, resolv)


def _wait(address: str, zones, proc, log: Path) -> None:
    import time
    import dns.message
    import dns.query
    import dns.rdatatype
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            q = dns.message.make_query("spf.test", dns.rdatatype.SOA)
            if dns.query.udp(q, address, timeout=0.5, port=53).answer:
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.05)
    pytest.fail(f"knotd did not answer on {address}:53:\n{log.read_text(errors='replace')[-2000:]}")


#: Each expansion is prefixed with this marker (\x01 index \x02) to find results in the output.
_START = re.compile(r"^> \x01(\d+)\x02", re.M)


def _config(tmp: Path, extra: str) -> Path:
    cfg = tmp / "exim.conf"
    cfg.write_text(main_options(tmp, "test.example") + f"never_users =\n{extra}\n")
    return cfg


def run_exim(args: Sequence[str], stdin: bytes, tmp: Path, config_extra: str = "",
             timeout: float = 60.0) -> str:
    """Run the unpacked Exim with a private minimal configuration; returns its stdout."""
    cmd = [str(exim_binary()), "-C", str(_config(tmp, config_extra)), *args]
    env = {**exim_env(), "LANG": "C.UTF-8"}
    proc = subprocess.run(cmd, input=stdin, capture_output=True, env=env, timeout=timeout, check=False)
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
