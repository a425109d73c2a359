"""The Debian package under test: build, install with apt, run its unit, a stock-style Postfix.

    deb = build_deb()                     # sh scripts/setup.sh deb -> dist/aclmilter_<v>_all.deb
    apt_install(deb); installed_version()
    unit = Unit.read()                    # /lib/systemd/system/aclmilter.service as installed
    with unit.running(log, env={...}) as proc:   # ExecStartPre, then ExecStart as User=
        ...
    pf = StockPostfix(relay_port=sink.port).start()   # Debian's master.cf: smtpd chroot y

Without systemd as PID 1 (CI containers) the unit's commands run the way systemd would run
them: as User=/Group= with the user's supplementary groups (setpriv --init-groups), the
unit's Environment=, UMask= and no new privileges; ${VAR} and $VAR expand as systemd.exec(5)
says. Every process is stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from .postfix import Postfix
from .procs import require_binary, stop_pid

REPO = Path(__file__).resolve().parents[2]
UNIT_PATH = Path("/lib/systemd/system/aclmilter.service")
SOCKET_DIR = Path("/var/spool/postfix/aclmilter")
DEBIAN_MASTER_CF = Path("/usr/share/postfix/master.cf.dist")
CONFIGURE_INSTANCE = Path("/usr/lib/postfix/configure-instance.sh")
README_DEBIAN = Path("/usr/share/doc/aclmilter/README.Debian")


def build_deb(version: str | None = None) -> Path:
    """Build the package with the documented command; returns the .deb path."""
    cmd = ["sh", str(REPO / "scripts" / "setup.sh"), "deb"] + ([version] if version else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _apt(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # other apt users on the machine: wait for the lock instead of failing
    return subprocess.run([require_binary("apt-get"), "-o", "DPkg::Lock::Timeout=900", "-y", *args],
                          capture_output=True, text=True, timeout=900, env=env)


def apt_install(deb: Path) -> str:
    """`apt install ./x.deb` (dependencies from the archive); returns apt's output."""
    proc = _apt("install", "--no-install-recommends", "--allow-downgrades", str(deb))
    if proc.returncode != 0:
        raise RuntimeError(f"apt-get install {deb} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def apt_purge() -> None:
    """Remove the package and its conffiles (no error when it is not installed)."""
    if installed_version():
        proc = _apt("purge", "aclmilter")
        if proc.returncode != 0:
            raise RuntimeError(f"apt-get purge aclmilter failed:\n{proc.stdout}\n{proc.stderr}")


def installed_version() -> str:
    """The installed package version, "" when not installed."""
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "aclmilter"],
                          capture_output=True, text=True, timeout=30)
    status, _, version = proc.stdout.rpartition(" ")
    return version if proc.returncode == 0 and status.endswith("installed") and "not-installed" not in status else ""


def readme_debian_lines(section: str) -> dict[str, str]:
    """The main.cf lines README.Debian prints in the section whose title starts with `section`."""
    text = README_DEBIAN.read_text()
    start = text.index(section)
    nxt = re.search(r"\n[^\n]+\n-{4,}\n", text[start + len(section):])
    body = text[start:start + len(section) + (nxt.start() if nxt else len(text))]
    lines = {}
    for m in re.finditer(r"^ {4}([a-z_]+) = ?(.*)$", body, re.M):
        lines[m.group(1)] = m.group(2).strip()
    return lines


def _expand(word: str, env: Mapping[str, str]) -> list[str]:
    """systemd.exec(5): `$VAR` alone is split at whitespace, `${VAR}` stays one word."""
    whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
    if whole:
        return env.get(whole.group(1), "").split()
    return [re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word)]


@dataclass
class Unit:
    """The [Service] settings of the installed unit that decide how its commands run."""

    service: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path = UNIT_PATH) -> "Unit":
        unit = cls()
        section = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]":
                key, _, value = line.partition("=")
                unit.service.setdefault(key.strip(), []).append(value.strip())
        return unit

    def one(self, key: str) -> str:
        return self.service[key][-1]

    def environment(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment= assignments (quoted ones too), then `overrides` (a drop-in's)."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        for value in self.service.get("Environment", []):
            for assignment in shlex.split(value):
                k, _, v = assignment.partition("=")
                env[k] = v
        env.update(overrides or {})
        return env

    def argv(self, key: str, env: Mapping[str, str]) -> list[str]:
        """The command of ExecStart= (or ExecStartPre=) expanded the way systemd would."""
        words = []
        for w in shlex.split(self.one(key).lstrip("-@+!")):
            words.extend(_expand(w, env))
        return words

    def as_user(self, argv: list[str]) -> list[str]:
        """argv wrapped to run as User=/Group= with that user's groups, no new privileges."""
        return [require_binary("setpriv"), "--reuid", self.one("User"), "--regid", self.one("Group"),
                "--init-groups", "--no-new-privs", "--", *argv]

    def _umask(self) -> None:
        os.umask(int(self.one("UMask"), 8))

    def check_policy(self, env: Mapping[str, str]) -> subprocess.CompletedProcess:
        """Run ExecStartPre= as the unit would."""
        return subprocess.run(self.as_user(self.argv("ExecStartPre", env)), env=dict(env), cwd="/",
                              capture_output=True, text=True, timeout=60, preexec_fn=self._umask)

    @contextlib.contextmanager
    def running(self, log: Path, overrides: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen]:
        """ExecStartPre= (must succeed), then ExecStart= in the background; stopped by PID."""
        env = self.environment(overrides)
        pre = self.check_policy(env)
        if pre.returncode != 0:
            raise RuntimeError(f"ExecStartPre failed ({pre.returncode}): {pre.stdout}{pre.stderr}")
        with open(log, "ab") as fh:
            proc = subprocess.Popen(self.as_user(self.argv("ExecStart", env)), env=env, cwd="/",
                                    stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=self._umask)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                stop_pid(proc.pid, timeout=20)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def connect_as(user: str, path: str) -> subprocess.CompletedProcess:
    """Try to connect to unix socket `path` as `user` (with that user's groups)."""
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(5)\n"
            "try:\n s.connect(sys.argv[1])\nexcept OSError as e:\n print(e.strerror); sys.exit(1)\n"
            "print('connected')")
    return subprocess.run([require_binary("setpriv"), "--reuid", user, "--regid", user if user != "nobody" else "nogroup",
                           "--init-groups", "--", "/usr/bin/python3", "-c", code, path],
                          capture_output=True, text=True, timeout=30)


class StockPostfix(Postfix):
    """A private Postfix whose master.cf is Debian's (smtpd and most services chrooted).

    Only the `smtp inet` line is changed, to listen on free loopback ports (chroot column
    still `y`). Before start, Debian's own configure-instance.sh prepares the chroot (copies
    etc/ files and NSS libraries into the queue directory), as Debian's postfix service does.
    """

    def _master_cf(self) -> str:
        stock = DEBIAN_MASTER_CF.read_text()
        listen = (f"127.0.0.1:{self.port} inet  n       -       y       -       -       smtpd\n"
                  f"127.0.0.1:{self.proxy_port} inet  n       -       y       -       -       smtpd\n"
                  "  -o smtpd_upstream_proxy_protocol=haproxy\n"
                  "  -o milter_macro_daemon_name=proxied\n")
        out, n = re.subn(r"^smtp\s+inet\s+n\s+-\s+y\s+-\s+-\s+smtpd\n", listen, stock, flags=re.M)
        if n != 1:
            raise RuntimeError(f"{DEBIAN_MASTER_CF}: no stock `smtp inet ... y ... smtpd` line")
        return out

    @property
    def smtpd_chroot(self) -> str:
        """Column 5 of the smtpd line in the master.cf we run (`y` for Debian's)."""
        proc = subprocess.run([require_binary("postconf"), "-c", str(self.conf), "-Fh",
                               f"127.0.0.1:{self.port}/inet/chroot"], capture_output=True, text=True, timeout=30)
        return proc.stdout.strip()

    def start(self, timeout: float = 20.0) -> "StockPostfix":
        self.write_config()
        self.queue.mkdir(exist_ok=True)
        shutil.chown(self.queue, "root", "root")
        env = {**os.environ, "MAIL_CONFIG": str(self.conf)}
        proc = subprocess.run(["sh", str(CONFIGURE_INSTANCE), "-"], env=env, capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"configure-instance.sh failed: {proc.stdout}{proc.stderr}")
        super().start(timeout)
        return self
