"""The Debian package, installed with apt on this machine, with a Postfix set up like Debian's.

One module fixture builds the package once (`sh scripts/setup.sh deb`) and installs it with
apt after purging any earlier install; the upgrade test, last, builds N+1. Postfix runs
privately on loopback with Debian's master.cf (smtpd chrooted) and is attached with the lines
the installed README.Debian prints. The unit's commands run as the unit would (tests/harness/
debian.py), since systemd is not PID 1 in CI.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.harness import debian
from tests.harness.milterclient import MilterClient
from tests.harness.postfix import simple_message, world_traversable_dir
from tests.harness.procs import require_binary, stop_pid, wait_path
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

SOCKET = "/var/spool/postfix/aclmilter/aclmilter.sock"


@pytest.fixture(scope="module")
def deb() -> Iterator[Path]:
    """Version N built and freshly installed (an earlier install is purged first)."""
    if os.geteuid() != 0:
        pytest.fail("the package tests install a .deb: run them as root (CI does)")
    path = debian.build_deb()
    debian.apt_purge()
    debian.apt_install(path)
    yield path


@pytest.fixture(scope="module")
def work() -> Path:
    return world_traversable_dir("aclmilter-deb-")


@pytest.fixture(scope="module")
def stock(deb: Path) -> Iterator[tuple[debian.StockPostfix, Sink]]:
    """One Postfix with Debian's master.cf (chrooted smtpd) relaying to a sink."""
    with Sink() as sink:
        pf = debian.StockPostfix(sink.port, extra_main={"myhostname": "mx.stock.test"})
        try:
            pf.start()
            yield pf, sink
        finally:
            pf.stop()
            pf.remove()


def _wait_log(path: Path, text: str, proc: subprocess.Popen, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text(errors="replace") if path.exists() else ""
        if text in log:
            return log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged (exit {proc.poll()}):\n{log[-3000:]}")


def _mode(path: str) -> tuple[str, str, int]:
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)


def test_apt_install_creates_user_files_conffile_and_man_pages(deb: Path) -> None:
    version = deb.name.split("_")[1]
    assert deb.name == f"aclmilter_{version}_all.deb" and deb.parent.name == "dist"
    assert debian.installed_version() == version
    user = pwd.getpwnam("aclmilter")
    assert user.pw_shell == "/usr/sbin/nologin" and user.pw_dir == "/var/lib/aclmilter"
    assert user.pw_uid < 1000, "a system user"
    assert "aclmilter" in grp.getgrnam("postfix").gr_mem
    assert _mode("/var/lib/aclmilter") == ("aclmilter", "aclmilter", 0o750)
    assert _mode("/var/spool/postfix/aclmilter") == ("aclmilter", "postfix", 0o750)
    assert _mode("/etc/aclmilter/policy.yaml") == ("root", "root", 0o644)
    assert _mode("/usr/bin/aclmilter")[2] == 0o755
    conffiles = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}", "aclmilter"],
                               capture_output=True, text=True, check=True).stdout.split()
    assert conffiles[0] == "/etc/aclmilter/policy.yaml" and len(conffiles[1]) == 32
    # enabled the way deb-systemd-helper does it, systemd running or not
    wants = Path("/etc/systemd/system/multi-user.target.wants/aclmilter.service")
    assert wants.is_symlink() and os.readlink(wants) == str(debian.UNIT_PATH)
    for page, section in (("aclmilter", "8"), ("aclmilter-policy", "5")):
        path = Path(f"/usr/share/man/man{section}/{page}.{section}.gz")
        assert path.exists()
        shown = subprocess.run([require_binary("man"), section, page], capture_output=True, text=True,
                               env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"}, timeout=30)
        assert shown.returncode == 0 and page.upper() in shown.stdout, shown.stderr
    doc = Path("/usr/share/doc/aclmilter")
    for name in ("README.Debian", "README.md", "mta.md", "policy.md", "copyright", "changelog.gz"):
        assert (doc / name).exists(), name
    assert "smtpd_milters = unix:/aclmilter/aclmilter.sock" in (doc / "README.Debian").read_text()
    out = subprocess.run(["/usr/bin/aclmilter", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"aclmilter {version}"


def test_lintian_reports_no_errors(deb: Path) -> None:
    proc = subprocess.run([require_binary("lintian"), "--tag-display-limit", "0", str(deb)],
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stdout.splitlines() if line.startswith("E:")]
    assert errors == [] and proc.returncode == 0, proc.stdout + proc.stderr


def test_systemd_analyze_verify_and_security(deb: Path) -> None:
    analyze = require_binary("systemd-analyze")
    verify = subprocess.run([analyze, "verify", str(debian.UNIT_PATH)], capture_output=True, text=True,
                            timeout=120)
    assert verify.returncode == 0 and "aclmilter" not in verify.stderr, verify.stderr
    sec = subprocess.run([analyze, "security", "--offline=yes", str(debian.UNIT_PATH)],
                         capture_output=True, text=True, timeout=120)
    level = float(sec.stdout.rsplit("Overall exposure level for aclmilter.service:", 1)[1].split()[0])
    assert level <= 2.0, sec.stdout
    unit = debian.Unit.read()
    # DNS to any resolver: no address filter in the shipped unit; writes only where it must
    assert "IPAddressDeny" not in unit.service and "IPAddressAllow" not in unit.service
    assert unit.one("ProtectSystem") == "strict"
    assert unit.one("ReadWritePaths").lstrip("-") == "/var/spool/postfix/aclmilter"
    assert unit.one("StateDirectory") == "aclmilter" and unit.one("User") == "aclmilter"
    assert unit.argv("ExecStart", unit.environment())[0] == "/usr/bin/aclmilter"
    assert unit.one("ExecReload") == "/bin/kill -USR1 $MAINPID"


def test_installed_code_passes_the_suite_with_debian_python(deb: Path) -> None:
    """/usr/bin/python3 with bookworm's python3-* libraries runs the installed package's code:
    every unit test (except one slow property test of the stdlib) and the DNS, SPF, DKIM,
    DMARC and Redis integration tests (Knot and Redis as real servers)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    where = subprocess.run(["/usr/bin/python3", "-c", "import aclmilter, milter, dns.version, redis;"
                            "print(aclmilter.__file__, milter.__file__, dns.version.version, redis.__version__)"],
                           capture_output=True, text=True, env=env, cwd=str(debian.REPO), check=True)
    mod, ext, dns_version, redis_version = where.stdout.split()
    assert mod == "/usr/lib/python3/dist-packages/aclmilter/__init__.py", where.stdout
    assert ext.startswith("/usr/lib/python3/dist-packages/"), where.stdout
    print(f"Debian python3: dnspython {dns_version}, redis-py {redis_version}")
    tests = ["tests/unit", "tests/integration/test_dns_knot.py", "tests/integration/test_spf_knot.py",
             "tests/integration/test_dkim_verify.py", "tests/integration/test_dmarc_eval.py",
             "tests/integration/test_dmarc_authresults.py", "tests/integration/test_redis_lookup.py",
             "tests/integration/test_ratelimit_redis.py",
             "--deselect", "tests/unit/test_lists.py::test_cidr_agrees_with_ipaddress"]
    proc = subprocess.run(["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          capture_output=True, text=True, env=env, cwd=str(debian.REPO), timeout=900)
    tail = proc.stdout[-3000:]
    assert proc.returncode == 0, tail + proc.stderr[-2000:]
    assert " passed" in tail and "failed" not in tail and "error" not in tail.lower(), tail


def test_unit_execstart_socket_reachable_by_postfix_only(deb: Path, work: Path) -> None:
    unit = debian.Unit.read()
    log = work / "unit.log"
    with unit.running(log) as proc:
        _wait_log(log, "listening on", proc)
        assert _mode(SOCKET) == ("aclmilter", "postfix", 0o660)
        assert stat.S_ISSOCK(os.stat(SOCKET).st_mode)
        ok = debian.connect_as("postfix", SOCKET)
        assert ok.returncode == 0 and "connected" in ok.stdout, ok.stdout + ok.stderr
        denied = debian.connect_as("nobody", SOCKET)
        assert denied.returncode == 1 and "Permission denied" in denied.stdout, denied.stdout
        # a second instance on the same socket is refused with the cause, not taken over
        second = subprocess.run(unit.as_user(unit.argv("ExecStart", unit.environment())),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 3 and f"socket path {SOCKET} is in use" in second.stderr, second.stderr
        assert proc.poll() is None
        # reload as `systemctl reload` does it (ExecReload=kill -USR1 $MAINPID)
        os.kill(proc.pid, signal.SIGUSR1)
        _wait_log(log, "reloaded (generation 2)", proc)
        assert proc.poll() is None
    # `systemctl stop`: SIGTERM, a clean exit
    assert proc.returncode == 0 and "stopped (pid" in log.read_text()


def _policy_with_ar(path: Path, ns: str) -> Path:
    """The shipped policy plus the test DNS server and an A-R header (no host names set)."""
    doc = yaml.safe_load(Path("/etc/aclmilter/policy.yaml").read_text())
    doc["settings"]["dns"] = {"nameservers": [ns], "timeout": 2, "lifetime": 4}
    doc["acl"]["data"] = [{"warn": {"add_header": "$dmarc_ar_header"}}, "accept"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o644)
    return path


def test_stock_postfix_chrooted_smtpd_delivers_through_the_installed_service(stock, work, knot_dns) -> None:
    pf, sink = stock
    sink.clear()
    main_cf = debian.readme_debian_lines("Postfix as Debian ships it")
    assert main_cf["smtpd_milters"] == "unix:/aclmilter/aclmilter.sock"
    assert pf.smtpd_chroot == "y"
    policy = _policy_with_ar(work / "stock.yaml", knot_dns.nameserver)
    sockdir = pf.queue / "aclmilter"
    subprocess.run(["install", "-d", "-o", "aclmilter", "-g", "postfix", "-m", "0750", str(sockdir)], check=True)
    pf.postconf(main_cf)
    unit = debian.Unit.read()
    log = work / "stock.log"
    # a drop-in would change exactly these two (the queue directory is private here)
    env = {"ACLMILTER_SOCKET": f"unix:{sockdir}/aclmilter.sock", "ACLMILTER_POLICY": str(policy)}
    with unit.running(log, env) as proc:
        _wait_log(log, "listening on", proc)
        r = pf.send("alice@example.org", ["bob@example.test"], simple_message())
        assert r.accepted, (r, pf.maillog()[-2000:])
        [d] = sink.wait_for(1, timeout=30)
    spf = " ".join(d.headers("Received-SPF")[0].split())
    assert "receiver=mx.stock.test;" in spf and "(mx.stock.test:" in spf, spf
    ar = " ".join(d.headers("Authentication-Results")[0].split())
    assert ar.startswith("mx.stock.test;"), ar


def test_setup_run_against_stock_postfix(stock, work) -> None:
    """`sh scripts/setup.sh run` (installation skipped: done by the suite's setup) prints
    lines that work as printed against Debian's chrooted smtpd."""
    pf, sink = stock
    sink.clear()
    pf.postconf({"smtpd_milters": "", "non_smtpd_milters": ""})
    log = work / "setup-run.log"
    env = {**os.environ, "ACLMILTER_NO_INSTALL": "1", "ACLMILTER_SPOOL": str(pf.queue),
           "ACLMILTER_POSTFIX_CONF": str(pf.conf), "ACLMILTER_VENV": str(Path(sys.executable).parent.parent)}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(["sh", str(debian.REPO / "scripts" / "setup.sh"), "run"], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out = _wait_log(log, "listening on", proc)
        printed = dict(line.strip().split(" = ", 1) if " = " in line else (line.strip().rstrip(" ="), "")
                       for line in out.splitlines()
                       if line.startswith("    ") and (" = " in line or line.rstrip().endswith(" =")))
        assert printed["smtpd_milters"] == "unix:/aclmilter/aclmilter.sock", out
        assert printed["non_smtpd_milters"] == "", out
        sock = pf.queue / "aclmilter" / "aclmilter.sock"
        wait_path(sock, 10)
        assert _mode(str(sock))[1:] == ("postfix", 0o660)
        assert _mode(str(sock.parent))[1:] == ("postfix", 0o750)
        pf.postconf(printed)
        r = pf.send("alice@example.org", ["bob@example.test"], simple_message())
        assert r.accepted, (r, pf.maillog()[-2000:])
        [d] = sink.wait_for(1, timeout=30)
        assert d.headers("Received-SPF"), d.header_names()
    finally:
        if proc.poll() is None:
            stop_pid(proc.pid, timeout=20)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)        # collect the status (else a ResourceWarning)


def test_upgrade_keeps_the_edited_policy_and_restarts_with_it(deb: Path, work: Path) -> None:
    policy = Path("/etc/aclmilter/policy.yaml")
    edited = policy.read_text().replace('log_message: "HELO is an address literal:',
                                        'log_message: "LOCAL EDIT: HELO is an address literal:')
    assert "LOCAL EDIT" in edited
    policy.write_text(edited)
    old = debian.installed_version()
    new_version = f"{old}+upgradetest1"
    newer = debian.build_deb(new_version)
    out = debian.apt_install(newer)
    assert debian.installed_version() == new_version, out
    assert policy.read_text() == edited, "the upgrade overwrote the administrator's policy"
    assert not Path(str(policy) + ".dpkg-new").exists()
    # postinst restarts the unit after an upgrade when systemd runs (deb-systemd-invoke);
    # without systemd as PID 1 the unit's own commands start the new code instead
    unit = debian.Unit.read()
    log = work / "upgraded.log"
    with unit.running(log) as proc:
        _wait_log(log, "listening on", proc)
        with MilterClient(f"unix:{SOCKET}") as mc:
            mc.connect("[192.0.2.7]", "4", 4711, "192.0.2.7", macros={"j": "mx.stock.test"})
            mc.helo("[192.0.2.7]")
            mc.mail("<a@example.org>")
            mc.rcpt("<b@example.test>")
            mc.data()
            mc.header("From", "a@example.org")
            mc.header("Subject", "upgrade")
            mc.eoh()
            mc.body(b"hello\r\n")
            assert mc.eom().action in ("continue", "accept")
        text = _wait_log(log, "LOCAL EDIT: HELO is an address literal: [192.0.2.7]", proc)
    assert f"aclmilter {new_version} starting" in text
