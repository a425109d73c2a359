"""The peers of issue 23's benchmarks, each started privately on loopback and stopped by PID.

    chain  = PeerChain(workdir, dns_port, libc_dns, kind)   # OpenDKIM (verify) -> OpenDMARC
    chain.start(); pf.set_milter(chain.postfix_spec)       #   -> pyspf-milter
    rspamd = Rspamd(workdir, dns_port, kind, modules=...); rspamd.start()

Everything comes from Debian packages (opendkim, opendmarc, pyspf-milter, rspamd; see
scripts/setup.sh `bench`). Each daemon runs in the foreground with its own configuration,
sockets and pid file under `workdir`; no system service, no system configuration file is
used or changed. DNS goes to the bench's loopback knotd only:

- OpenDKIM and rspamd have a nameserver option (`Nameservers 127.0.0.1@PORT`,
  `dns { nameserver = ... }`);
- OpenDMARC 1.4.2 and pyspf-milter read /etc/resolv.conf and have no port option: they run
  in a private mount namespace (`unshare --mount`) where /etc/resolv.conf is a bind mount of
  a file naming `libc_dns` (a 127/8 address on which knotd also answers port 53,
  bench/localdns.py). The real file is never touched.

rspamd's stock modules would fetch remote maps over HTTP; every module except the ones in
`modules` (default SPF, DKIM, DMARC) is disabled, so its traffic stays on loopback too.
`modules=None` keeps the stock modules; that rspamd starts only inside a loopback-only
network namespace (bench/netns.py, `postfix_bench.py --netns`), where the remote fetches fail
at once and its DNS still goes to the bench's knotd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.procs import free_port, require_binary, stop_pid, wait_path, wait_port  # noqa: E402

from netns import require_isolated  # noqa: E402

AUTHSERV_ID = "mx.bench.invalid"


def _in_private_resolv(resolv: Path, cmd: list[str]) -> list[str]:
    """`cmd` in a private mount namespace whose /etc/resolv.conf is `resolv` (same PID: exec)."""
    return [require_binary("unshare"), "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv), *cmd]


class _Daemon:
    """One foreground daemon: its socket (unix path or inet port), its process, its log."""

    def __init__(self, name: str, workdir: Path, kind: str) -> None:
        self.name, self.dir, self.kind = name, workdir / name, kind
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o777)       # daemons that drop privileges write their socket here
        self.port = free_port() if kind == "inet" else 0
        self.sock = self.dir / f"{name}.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def postfix_spec(self) -> str:
        return f"inet:127.0.0.1:{self.port}" if self.port else f"unix:{self.sock}"

    def launch(self, cmd: list[str], timeout: float = 30.0) -> None:
        with open(self.dir / "stdout.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if self.port:
            wait_port("127.0.0.1", self.port, timeout, self.proc)
        else:
            wait_path(self.sock, timeout)
            os.chmod(self.sock, 0o666)  # Postfix's smtpd runs as postfix

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc.pid)


class PeerChain:
    """OpenDKIM (verify only) -> OpenDMARC -> pyspf-milter, in Postfix's smtpd_milters order."""

    def __init__(self, workdir: Path, dns_port: int, libc_dns: str, kind: str = "inet",
                 dns_host: str = "127.0.0.1") -> None:
        self.dir = workdir
        self.dns_host = dns_host
        workdir.mkdir(parents=True, exist_ok=True)
        self.dns_port = dns_port
        self.resolv = workdir / "resolv.conf"
        self.resolv.write_text(f"nameserver {libc_dns}\noptions attempts:1 timeout:2\n")
        self.opendkim = _Daemon("opendkim", workdir, kind)
        self.opendmarc = _Daemon("opendmarc", workdir, kind)
        self.pyspf = _Daemon("pyspf-milter", workdir, kind)
        self.daemons = [self.opendkim, self.opendmarc, self.pyspf]

    @property
    def postfix_spec(self) -> str:
        return ", ".join(d.postfix_spec for d in self.daemons)

    @property
    def pids(self) -> list[int]:
        return [d.proc.pid for d in self.daemons if d.proc is not None]

    @staticmethod
    def _milter_socket(d: _Daemon) -> str:
        return f"inet:{d.port}@127.0.0.1" if d.port else f"local:{d.sock}"

    def start(self) -> "PeerChain":
        try:
            self._start_opendkim()
            self._start_opendmarc()
            self._start_pyspf()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_opendkim(self) -> None:
        d = self.opendkim
        (d.dir / "internal.hosts").write_text("240.0.0.1\n")   # nobody: mail from loopback is verified
        conf = d.dir / "opendkim.conf"
        # Mode v: verify only. Nameservers: libunbound forwards to the bench knotd only.
        conf.write_text(f"""Mode v
Socket {self._milter_socket(d)}
PidFile {d.dir / 'opendkim.pid'}
UMask 000
AuthservID {AUTHSERV_ID}
InternalHosts {d.dir / 'internal.hosts'}
Nameservers {self.dns_host}@{self.dns_port}
Syslog no
SoftwareHeader no
RequireSafeKeys false
""")
        d.launch([require_binary("opendkim"), "-f", "-x", str(conf)])

    def _start_opendmarc(self) -> None:
        d = self.opendmarc
        (d.dir / "ignore.hosts").write_text("")               # empty: check mail from loopback too
        conf = d.dir / "opendmarc.conf"
        # SPFSelfValidate: OpenDMARC checks SPF itself (libspf2 or its own code) when the
        # chain's SPF milter runs after it, as in this order.
        conf.write_text(f"""AuthservID {AUTHSERV_ID}
TrustedAuthservIDs {AUTHSERV_ID}
Socket {self._milter_socket(d)}
PidFile {d.dir / 'opendmarc.pid'}
UMask 000
HistoryFile {d.dir / 'history.dat'}
IgnoreHosts {d.dir / 'ignore.hosts'}
SPFSelfValidate true
SPFIgnoreResults false
RejectFailures false
FailureReports false
RequiredHeaders false
SoftwareHeader false
DNSTimeout 5
PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat
Syslog false
""")
        d.launch(_in_private_resolv(self.resolv, [require_binary("opendmarc"), "-f", "-c", str(conf)]))

    def _start_pyspf(self) -> None:
        d = self.pyspf
        conf = d.dir / "pyspf-milter.conf"
        sock = f"inet:{d.port}@127.0.0.1" if d.port else f"unix:{d.sock}"
        # skip_addresses/InternalHosts: a never-matching address, so loopback mail is checked
        conf.write_text(f"""debugLevel = 0
TestOnly = 1
HELO_reject = False
Mail_From_reject = Fail
PermError_reject = False
TempError_Defer = False
skip_addresses = 240.0.0.1/32
Authserv_Id = {AUTHSERV_ID}
Socket = {sock}
PidFile = {d.dir / 'pyspf-milter.pid'}
UserID = nobody:nogroup
InternalHosts = 240.0.0.1
Lookup_Time = 10
""")
        d.launch(_in_private_resolv(self.resolv, [require_binary("pyspf-milter"), str(conf)]))

    def stop(self) -> None:
        for d in reversed(self.daemons):
            d.stop()


DEFAULT_MODULES = ("spf", "dkim", "dmarc")
#: The modules whose checks must also run for mail from loopback (the bench's own mail).
AUTH_MODULES = ("spf", "dkim", "dmarc")


def stock_module_names(modules_dir: Path = Path("/etc/rspamd/modules.d")) -> list[str]:
    """The modules the rspamd package configures (one modules.d/NAME.conf each)."""
    return sorted(conf.stem for conf in modules_dir.glob("*.conf"))


def rspamd_config(bind: str, dns: str, controller_port: int, modules: tuple[str, ...] | None,
                  stock: list[str]) -> dict[str, str]:
    """The private LOCAL_CONFDIR of the bench's rspamd: {path relative to it: text}.

    `modules` None keeps the stock module configuration (every module the package enables
    stays enabled); a tuple disables every module of `stock` not in it. Either way DNS goes
    to `dns` only (the bench's knotd, HOST:PORT) and loopback is not a local address, so the
    SPF, DKIM and DMARC checks run on the bench's mail from 127.0.0.1."""
    files = {
        # local_addrs: none, so SPF/DKIM/DMARC are checked for mail from loopback too
        "local.d/options.inc": f'dns {{\n  nameserver = ["{dns}"];\n  timeout = 2s;\n  retransmits = 2;\n}}\n'
                               'local_addrs = ["240.0.0.1/32"];\n',
        "override.d/worker-proxy.inc": f'bind_socket = "{bind}";\nmilter = yes;\ntimeout = 120s;\n'
                                       'upstream "local" {\n  default = yes;\n  self_scan = yes;\n}\ncount = 1;\n'
                                       'discard_on_reject = false;\nquarantine_on_reject = false;\n',
        "override.d/worker-normal.inc": "enabled = false;\n",
        "override.d/worker-controller.inc": f'bind_socket = "127.0.0.1:{controller_port}";\n',
        # info: rspamd's default, one line per message (aclmilter logs one too)
        "override.d/logging.inc": 'type = "file";\nfilename = "$LOGDIR/rspamd.log";\nlevel = "info";\n',
    }
    if modules is not None:
        for name in stock:
            if name not in modules:
                files[f"override.d/{name}.conf"] = "enabled = false;\n"
    for name in AUTH_MODULES:
        files[f"local.d/{name}.conf"] = "check_local = true;\ncheck_authed = true;\n"
    return files


class Rspamd:
    """rspamd's proxy worker in milter mode (self_scan), private config, log, db and run dirs.

    `modules` None: the stock modules, which fetch remote maps and ask public DNS lists; it
    refuses to start outside a loopback-only network namespace (bench/netns.py). `libc_dns`:
    run it with a private /etc/resolv.conf naming that address (the bench knotd's port 53), for
    the names rspamd resolves with getaddrinfo() instead of its own resolver (the fuzzy_check
    servers, say), so those questions also go to knotd."""

    def __init__(self, workdir: Path, dns_port: int, kind: str = "inet",
                 modules: tuple[str, ...] | None = DEFAULT_MODULES, dns_host: str = "127.0.0.1",
                 libc_dns: str | None = None) -> None:
        self.d = _Daemon("rspamd", workdir, kind)
        self.dns_port, self.modules, self.dns_host, self.libc_dns = dns_port, modules, dns_host, libc_dns

    @property
    def postfix_spec(self) -> str:
        return self.d.postfix_spec

    @property
    def pids(self) -> list[int]:
        return [self.d.proc.pid] if self.d.proc is not None else []

    def start(self) -> "Rspamd":
        if self.modules is None:
            require_isolated("rspamd with its stock modules")
        base = self.d.dir
        etc = base / "etc"
        for sub in ("etc/local.d", "etc/override.d", "db", "run", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("db", "run", "log"):
            shutil.chown(base / sub, "_rspamd", "_rspamd")
        bind = f"127.0.0.1:{self.d.port}" if self.d.port else f"{self.d.sock} mode=0666"
        files = rspamd_config(bind, f"{self.dns_host}:{self.dns_port}", free_port(), self.modules,
                              stock_module_names())
        for rel, text in files.items():
            (etc / rel).write_text(text)
        var = [f"--var=LOCAL_CONFDIR={etc}", f"--var=DBDIR={base / 'db'}", f"--var=RUNDIR={base / 'run'}",
               f"--var=LOGDIR={base / 'log'}"]
        cmd = [require_binary("rspamd"), "-f", "-u", "_rspamd", "-g", "_rspamd",
               "-c", "/etc/rspamd/rspamd.conf", *var, "-p", str(base / "run" / "rspamd.pid")]
        if self.libc_dns:
            resolv = base / "resolv.conf"
            resolv.write_text(f"nameserver {self.libc_dns}\noptions attempts:1 timeout:2\n")
            cmd = _in_private_resolv(resolv, cmd)
        self.d.launch(cmd, timeout=90)
        time.sleep(1.0)                 # the proxy binds before its workers have loaded the rules
        return self

    def stop(self) -> None:
        self.d.stop()
