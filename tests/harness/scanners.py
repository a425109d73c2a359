"""Real SpamAssassin (spamd) and rspamd servers on free loopback ports, for integration tests.

Both run as foreground children with private configuration directories, no network tests
and no rule updates, and are stopped by the PID we started (never by name).

- spamd: `-L` (local tests only), rules from Debian's /usr/share/spamassassin (GTUBE is
  among them), a private site-config dir with Bayes/RBL/Razor/Pyzor off; it listens on a
  TCP port and on a unix socket.
- rspamd: Debian's /etc/rspamd/rspamd.conf with LOCAL_CONFDIR pointed at a private dir:
  only the normal worker (127.0.0.1:free port), no controller/proxy/fuzzy, no Redis, every
  network-dependent module off, DNS pointed at an unused loopback port so lookups fail fast.
  It takes 10-15 s to start, so tests share one instance per session (the `rspamd` fixture).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from .procs import free_port, require_binary, running, wait_path, wait_port

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# Bayes, network lookups and plugins that phone out are off: the tests have no Internet and
# results must not depend on what a previous run learnt.
_SA_LOCAL_CF = """\
use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
dns_available no
use_razor2 0
use_pyzor 0
use_auto_whitelist 0
"""


@dataclass
class SpamdServer:
    host: str
    port: int
    socket_path: str
    pid: int
    log: Path

    @property
    def tcp_address(self) -> str:
        return f"{self.host}:{self.port}"


@contextlib.contextmanager
def spamd_server(logdir: Path) -> Iterator[SpamdServer]:
    """Start spamd on 127.0.0.1:<free port> and a unix socket; stop it by PID afterwards.

    spamd's children run as `nobody`, which cannot enter pytest's 0700 temp dirs, so the
    configuration lives in a world-traversable temp dir removed afterwards; the log goes to
    `logdir`.
    """
    spamd = require_binary("spamd")
    workdir = Path(tempfile.mkdtemp(prefix="aclmilter-spamd-"))
    workdir.chmod(0o755)
    try:
        with _spamd(spamd, workdir, logdir) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _spamd(spamd: str, workdir: Path, logdir: Path) -> Iterator[SpamdServer]:
    rules = Path("/usr/share/spamassassin")
    if not (rules / "20_body_tests.cf").exists() and not list(rules.glob("*.cf")):
        raise RuntimeError("SpamAssassin rules are missing from /usr/share/spamassassin")
    site = workdir / "sa-site"
    site.mkdir(parents=True, exist_ok=True)
    # The .pre files load the plugins; they are configuration of this host, not rules.
    for pre in Path("/etc/spamassassin").glob("*.pre"):
        shutil.copy(pre, site / pre.name)
    (site / "local.cf").write_text(_SA_LOCAL_CF)
    home = workdir / "sa-home"
    home.mkdir(exist_ok=True)
    os.chmod(home, 0o777)   # spamd children run as nobody
    sock_dir = workdir / "sa-sock"
    sock_dir.mkdir(exist_ok=True)
    os.chmod(sock_dir, 0o777)
    sock = sock_dir / "spamd.sock"
    port = free_port()
    log = logdir / "spamd.log"
    cmd = [spamd, "-L", "-x", "--listen", f"127.0.0.1:{port}", "--listen", str(sock),
           "--socketmode", "0666", "-C", str(rules), "--siteconfigpath", str(site),
           "-m", "2", "--min-children", "1", "--max-spare", "2", "-s", "stderr",
           "-u", "nobody", "-H", str(home), "-r", str(workdir / "spamd.pid")]
    with running(cmd, log) as proc:
        wait_port("127.0.0.1", port, timeout=60, proc=proc)
        wait_path(sock, timeout=10)
        yield SpamdServer("127.0.0.1", port, str(sock), proc.pid, log)


@dataclass
class RspamdServer:
    host: str
    port: int
    pid: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


# Modules that would talk to the network (DNS lists, fuzzy storage, maps on the Internet) or
# need Redis. Disabling them keeps the result a function of the message alone.
_RSPAMD_OFF = (
    "fuzzy_check", "rbl", "surbl", "emails", "asn", "phishing", "url_redirector", "greylist",
    "ratelimit", "neural", "replies", "history_redis", "dkim", "spf", "dmarc", "arc", "dkim_signing",
    "reputation", "p0f", "mx_check", "whitelist", "hfilter", "dcc", "antivirus", "external_services",
    "clickhouse", "elastic", "metadata_exporter", "rspamd_update", "bimi", "maillist", "multimap",
    "spamassassin", "once_received", "trie", "mid", "force_actions", "aws_s3", "dynamic_conf",
    "spamtrap", "milter_headers", "known_senders",
)


def _rspamd_config(confdir: Path, port: int, dns_port: int) -> None:
    local = confdir / "local.d"
    override = confdir / "override.d"
    local.mkdir(parents=True, exist_ok=True)
    override.mkdir(parents=True, exist_ok=True)
    (override / "worker-normal.inc").write_text(f'bind_socket = "127.0.0.1:{port}";\ncount = 1;\n')
    for worker in ("worker-controller.inc", "worker-proxy.inc", "worker-fuzzy.inc"):
        (override / worker).write_text("enabled = false;\ncount = 0;\n")
    # An unused loopback UDP port: every DNS query is refused at once instead of timing out.
    (override / "options.inc").write_text(
        f'dns {{ nameserver = ["127.0.0.1:{dns_port}"]; timeout = 0.5s; retransmits = 1; }}\n'
        'local_addrs = [];\n')
    (override / "logging.inc").write_text('level = "notice";\n')
    for module in _RSPAMD_OFF:
        (override / f"{module}.conf").write_text("enabled = false;\n")


@contextlib.contextmanager
def rspamd_server(workdir: Path) -> Iterator[RspamdServer]:
    """Start rspamd's normal worker on 127.0.0.1:<free port>; stop it by PID afterwards."""
    rspamd = require_binary("rspamd")
    confdir = workdir / "rspamd-etc"
    dbdir, rundir, logdir = workdir / "rspamd-db", workdir / "rspamd-run", workdir / "rspamd-log"
    for d in (dbdir, rundir, logdir):
        d.mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "_rspamd", "_rspamd")
    port = free_port()
    dns_port = free_port()
    _rspamd_config(confdir, port, dns_port)
    log = workdir / "rspamd.out"
    cmd = [rspamd, "-f", "-u", "_rspamd", "-g", "_rspamd", "-c", "/etc/rspamd/rspamd.conf",
           "-p", str(rundir / "rspamd.pid"),
           f"--var=LOCAL_CONFDIR={confdir}", f"--var=DBDIR={dbdir}", f"--var=RUNDIR={rundir}",
           f"--var=LOGDIR={logdir}"]
    with running(cmd, log) as proc:
        wait_port("127.0.0.1", port, timeout=90, proc=proc)
        _wait_rspamd_ready("127.0.0.1", port, proc)
        yield RspamdServer("127.0.0.1", port, proc.pid, logdir / "rspamd.log")


def _wait_rspamd_ready(host: str, port: int, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """The port opens before the worker has compiled its rules: wait for /ping to answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rspamd exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(5)
                s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if b" 200 " in data.split(b"\r\n", 1)[0]:
                    return
        time.sleep(0.2)
    raise TimeoutError("rspamd did not answer /ping")


@pytest.fixture(scope="session")
def spamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpamdServer]:
    """One real spamd for the whole test run (defined once, in tests/conftest.py)."""
    with spamd_server(tmp_path_factory.mktemp("spamd")) as server:
        yield server


@pytest.fixture(scope="session")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator["RspamdServer"]:
    """One real rspamd for the whole test run (it takes 10-15 s to start)."""
    with rspamd_server(tmp_path_factory.mktemp("rspamd")) as server:
        yield server


def message(subject: str, body: str, sender: str = "alice@example.org", to: str = "bob@example.com"
            ) -> tuple[list[tuple[str, str]], bytes]:
    """A small RFC 5322 message as (headers without the leading space, CRLF body)."""
    headers = [("From", f"<{sender}>"), ("To", f"<{to}>"), ("Subject", subject),
               ("Date", "Thu, 20 Nov 2025 10:00:00 +0000"), ("Message-ID", "<t1@example.org>")]
    return headers, body.replace("\r\n", "\n").replace("\n", "\r\n").encode()
