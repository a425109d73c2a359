"""A private, throw-away Postfix instance for integration tests, plus an SMTP client helper.

`Postfix(relay_port=...)` writes `etc/main.cf` + `etc/master.cf` into its own directory
(queue and data dirs beside `etc/`, never inside it), starts `postfix -c DIR/etc start` with
smtpd on a free loopback port, and a second smtpd on another free port that expects a
HAProxy PROXY header (`smtpd_upstream_proxy_protocol=haproxy`, `milter_macro_daemon_name=
proxied`). Every message is relayed to `smtp:[127.0.0.1]:relay_port` (a `tests.harness.sink.
Sink`). Peer-name lookups and DNS are off, so Postfix never asks a real resolver.
`milter_default_action = tempfail`, protocol 6, and every macro a milter may ask for is
listed per stage (a milter's setsymlist narrows them).

Stop is by the master PID from `queue/pid/master.pid` (never by name).

API (stable; other feature tests rely on it)::

    pf = Postfix(relay_port=sink.port, milter="inet:127.0.0.1:9900").start()
    pf.set_milter("unix:/path/sock")     # postconf + reload; None = no milter
    pf.postconf({"smtpd_milters": ...})  # any main.cf change + reload
    pf.reload(); pf.stop(); pf.maillog(); pf.wait_log(regex, timeout)
    r = pf.send("a@example.org", ["b@example.test"], body_bytes_or_str)
    r = pf.send(..., proxy="PROXY TCP4 203.0.113.7 127.0.0.1 4711 25")   # via the PROXY port
    r.rcpt["b@example.test"] -> (code, text); r.data -> (code, text) | None; r.disconnected

`postfix_instance(tmp_root, sink)` is a context manager wrapping start/stop for fixtures.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from .procs import free_port, require_binary, stop_pid, wait_port

#: Every macro aclmilter (or another milter under test) may request, for each stage list.
MACROS = ("j _ v {daemon_name} {daemon_addr} {daemon_port} {client_addr} {client_port} "
          "{client_name} {client_ptr} {client_resolve} {client_connections} {if_name} {if_addr}")
STAGE_MACROS = {
    "milter_connect_macros": MACROS,
    "milter_helo_macros": MACROS + " {tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
    "milter_mail_macros": "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} "
                          "{mail_mailer} " + MACROS,
    "milter_rcpt_macros": "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
    "milter_data_macros": "i",
    "milter_end_of_header_macros": "i",
    "milter_end_of_data_macros": "i",
}

_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def world_traversable_dir(prefix: str = "aclmilter-") -> Path:
    """Create a temp dir that user `postfix` can traverse (pytest's tmp dirs are 0700).

    Unix milter sockets and the queue live below it; smtpd runs as `postfix` and must be able
    to reach them.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@dataclass
class SendResult:
    """What the SMTP client saw for one transaction."""

    banner: tuple[int, str] | None = None
    helo: tuple[int, str] | None = None
    mail: tuple[int, str] | None = None
    rcpt: dict[str, tuple[int, str]] = field(default_factory=dict)
    data: tuple[int, str] | None = None
    disconnected: bool = False           # the server closed the connection on us
    error: str | None = None

    @property
    def accepted(self) -> bool:
        """True when DATA got a 2xx reply."""
        return self.data is not None and 200 <= self.data[0] < 300

    @property
    def queue_id(self) -> str | None:
        """The Postfix queue id from the 250 reply to DATA ('queued as XXXX')."""
        if not self.data:
            return None
        m = re.search(r"queued as ([0-9A-Za-z]+)", self.data[1])
        return m.group(1) if m else None


class _ProxySMTP(smtplib.SMTP):
    """smtplib client that writes a PROXY v1 line before reading the banner."""

    def __init__(self, proxy_line: str, **kw: object) -> None:
        self._proxy_line = proxy_line
        super().__init__(**kw)  # type: ignore[arg-type]

    def _get_socket(self, host, port, timeout):  # smtplib signature
        sock = socket.create_connection((host, port), timeout)
        sock.sendall(self._proxy_line.rstrip("\r\n").encode("ascii") + b"\r\n")
        return sock


def smtp_send(host: str, port: int, sender: str, rcpts: Sequence[str], data: bytes | str,
              helo: str = "client.example.org", proxy: str | None = None,
              timeout: float = 60.0) -> SendResult:
    """Run one SMTP transaction and report every reply; never raises on SMTP refusals.

    `data` is the full message (headers + body); bare LF line ends are converted to CRLF.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    data = re.sub(rb"(?<!\r)\n", b"\r\n", data)
    res = SendResult()
    client: smtplib.SMTP = (_ProxySMTP(proxy, timeout=timeout) if proxy
                            else smtplib.SMTP(timeout=timeout))
    try:
        res.banner = _as_text(client.connect(host, port))
        res.helo = _as_text(client.ehlo(helo))
        if res.helo[0] >= 400:
            res.disconnected = _closed(client)
            return res
        res.mail = _as_text(client.mail(sender))
        if res.mail[0] >= 400:
            res.disconnected = res.mail[0] in (421, 521) and _closed(client)
            return res
        for r in rcpts:
            res.rcpt[r] = _as_text(client.rcpt(r))
            if res.rcpt[r][0] in (421, 521):
                res.disconnected = _closed(client)
                return res
        if not any(c < 300 for c, _ in res.rcpt.values()):
            client.rset()
            return res
        res.data = _as_text(client.data(data))
        if res.data[0] in (421, 521):
            res.disconnected = _closed(client)
    except smtplib.SMTPConnectError as exc:
        res.banner = (exc.smtp_code, exc.smtp_error.decode("utf-8", "replace")
                      if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error))
        res.disconnected = True
    except smtplib.SMTPServerDisconnected as exc:
        res.disconnected = True
        res.error = str(exc)
    except smtplib.SMTPResponseException as exc:
        res.error = f"{exc.smtp_code} {exc.smtp_error!r}"
        if exc.smtp_code in (421, 521):
            res.disconnected = True
    finally:
        if not res.disconnected:
            with contextlib.suppress(Exception):
                client.quit()
        with contextlib.suppress(Exception):
            client.close()
    return res


def _as_text(reply: tuple[int, bytes]) -> tuple[int, str]:
    return reply[0], reply[1].decode("utf-8", "replace")


def _closed(client: smtplib.SMTP) -> bool:
    """True when the server has hung up (a NOOP gets EOF instead of an answer)."""
    try:
        client.noop()
    except (smtplib.SMTPServerDisconnected, OSError):
        return True
    return False


class Postfix:
    """One private Postfix instance: config in DIR/etc, queue in DIR/queue, log in DIR/maillog."""

    def __init__(self, relay_port: int, milter: str | None = None, root: str | Path | None = None,
                 smtpd_port: int | None = None, proxy_port: int | None = None,
                 default_action: str = "tempfail", extra_main: Mapping[str, str] | None = None,
                 in_flow_delay: str = "0") -> None:
        self._own_root = root is None
        self.root = Path(root) if root else world_traversable_dir("aclmilter-pf-")
        self.root.mkdir(parents=True, exist_ok=True)
        self.conf = self.root / "etc"
        self.queue = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log_path = self.root / "maillog"
        self.relay_port = relay_port
        self.milter = milter
        self.port = smtpd_port or free_port()
        self.proxy_port = proxy_port or free_port()
        self.default_action = default_action
        self.extra_main = dict(extra_main or {})
        self.in_flow_delay = in_flow_delay
        self.postfix_bin = require_binary("postfix")
        self.master_pid: int | None = None

    # -- configuration ---------------------------------------------------------------------
    def main_cf(self) -> dict[str, str]:
        """The main.cf settings this instance runs with."""
        d = self.root
        cf = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue), "data_directory": str(self.data_dir),
            "command_directory": "/usr/sbin", "daemon_directory": "/usr/lib/postfix/sbin",
            "meta_directory": "/etc/postfix", "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix", "setgid_group": "postdrop",
            "syslog_name": "postfix-test",
            # a maillog outside /var needs its directory in the prefixes, or `postfix check`
            # fails silently
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": f"/var, /dev/stdout, {d}",
            "myhostname": "mx.test.example", "mydomain": "test.example",
            "myorigin": "$myhostname", "mydestination": "", "local_recipient_maps": "",
            "local_transport": "error:5.1.1 local delivery disabled in tests",
            "alias_maps": "", "alias_database": "", "relay_domains": "",
            "inet_interfaces": "loopback-only", "inet_protocols": "all",
            "mynetworks": "127.0.0.0/8 [::1]/128",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "default_transport": f"smtp:[127.0.0.1]:{self.relay_port}",
            "relay_transport": f"smtp:[127.0.0.1]:{self.relay_port}",
            "biff": "no", "append_dot_mydomain": "no", "readme_directory": "no",
            "smtpd_banner": "$myhostname ESMTP test",
            "in_flow_delay": self.in_flow_delay,
            # retry deferred mail quickly so a "retry after restart" test is not slow
            "queue_run_delay": "2s", "minimal_backoff_time": "2s", "maximal_backoff_time": "4s",
            "smtpd_milters": self.milter or "",
            "non_smtpd_milters": "",
            "milter_default_action": self.default_action,
            "milter_protocol": "6",
            "smtpd_error_sleep_time": "0", "smtpd_soft_error_limit": "100",
            "smtpd_hard_error_limit": "200",
        }
        cf.update(STAGE_MACROS)
        cf.update(self.extra_main)
        return cf

    def _master_cf(self) -> str:
        lines = [f"127.0.0.1:{self.port} inet n - n - - smtpd",
                 f"[::1]:{self.port} inet n - n - - smtpd",
                 f"127.0.0.1:{self.proxy_port} inet n - n - - smtpd",
                 "  -o smtpd_upstream_proxy_protocol=haproxy",
                 "  -o milter_macro_daemon_name=proxied",
                 # the proxied client is outside mynetworks; static:OK passes the relay check
                 # while keeping the reject_unauth_destination smtpd insists on
                 "  -o smtpd_relay_restrictions=permit_mynetworks,check_client_access,static:OK,"
                 "reject_unauth_destination",
                 "  -o syslog_name=postfix-test/proxied"]
        return "\n".join(lines) + "\n" + _MASTER_SERVICES

    def write_config(self) -> None:
        """Write main.cf and master.cf from the current attributes."""
        self.conf.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k} = {v}\n" for k, v in self.main_cf().items())
        (self.conf / "main.cf").write_text("# generated by tests/harness/postfix.py\n" + text)
        (self.conf / "master.cf").write_text(self._master_cf())

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> "Postfix":
        """Write the config, run `postfix check` and `start`, wait for smtpd to listen."""
        self.write_config()
        self.queue.mkdir(exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        shutil.chown(self.queue, "root", "root")
        shutil.chown(self.data_dir, "postfix")
        self.log_path.touch()
        self._postfix("check")
        self._postfix("start")
        pidfile = self.queue / "pid" / "master.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                self.master_pid = int(pidfile.read_text().split()[0])
                break
            time.sleep(0.05)
        if self.master_pid is None:
            raise RuntimeError(f"postfix master did not write {pidfile}:\n{self.maillog()[-2000:]}")
        wait_port("127.0.0.1", self.port, timeout)
        wait_port("127.0.0.1", self.proxy_port, timeout)
        return self

    def _postfix(self, *args: str) -> None:
        proc = subprocess.run([self.postfix_bin, "-c", str(self.conf), *args],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} failed ({proc.returncode}): "
                               f"{proc.stderr}\n{self.maillog()[-2000:]}")

    def reload(self, timeout: float = 15.0) -> None:
        """Re-read main.cf/master.cf and wait until the master logged that it did.

        `postfix reload` only signals the master; waiting for its "reload" log line keeps the
        next test connection from reaching an smtpd that still runs the old configuration.
        """
        before = self.maillog().count("reload -- version")
        old_smtpd = self._smtpd_pids()
        self._postfix("reload")
        deadline = time.monotonic() + timeout
        while self.maillog().count("reload -- version") <= before:
            if time.monotonic() > deadline:
                raise TimeoutError("postfix master did not log its reload")
            time.sleep(0.05)
        # An idle smtpd of the old generation may still accept one more session with the old
        # settings; wait (bounded) until those processes are gone. A busy one finishes its
        # session first, which is what a reload under traffic must allow.
        settle = time.monotonic() + min(timeout, 10.0)
        while old_smtpd & self._smtpd_pids() and time.monotonic() < settle:
            time.sleep(0.05)

    def _smtpd_pids(self) -> set[int]:
        """PIDs of this instance's smtpd processes (children of our master), from /proc."""
        if self.master_pid is None:
            return set()
        pids = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == self.master_pid and b"smtpd" in (entry / "cmdline").read_bytes():
                    pids.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        return pids

    def postconf(self, settings: Mapping[str, str]) -> None:
        """Change main.cf settings and reload."""
        self.extra_main.update(settings)
        self.write_config()
        self.reload()

    def set_milter(self, spec: str | None, default_action: str | None = None) -> None:
        """Attach `spec` (e.g. `inet:127.0.0.1:9900`, `unix:/path`) or None; then reload.

        A reload is not instant for smtpd processes that are already idle-waiting: Postfix
        tells them to exit after their current session, so the next session sees the change.
        """
        self.milter = spec
        if default_action:
            self.default_action = default_action
        self.write_config()
        self.reload()

    def stop(self) -> None:
        """Stop the instance by its master PID (and wait for it to go)."""
        if self.master_pid is None:
            return
        stop_pid(self.master_pid, timeout=20)
        self.master_pid = None

    def remove(self) -> None:
        """Delete the instance directory if this object created it (call after stop())."""
        if self._own_root and self.master_pid is None:
            shutil.rmtree(self.root, ignore_errors=True)

    def flush(self) -> None:
        """Ask the queue manager to retry deferred mail now (`postqueue -f`)."""
        subprocess.run([require_binary("postqueue"), "-c", str(self.conf), "-f"],
                       capture_output=True, timeout=30, check=False)

    # -- observation -----------------------------------------------------------------------
    def maillog(self) -> str:
        """The whole maillog so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 20.0, start: int = 0) -> re.Match[str]:
        """Wait until `pattern` (regex) appears in the maillog after offset `start`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.maillog(), start)
            if m:
                return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pattern!r} not in maillog within {timeout}s")
            time.sleep(0.1)

    def send(self, sender: str, rcpts: Sequence[str], data: bytes | str, *,
             proxy: str | None = None, helo: str = "client.example.org",
             host: str = "127.0.0.1", timeout: float = 60.0) -> SendResult:
        """One SMTP transaction to this instance (to the PROXY listener if `proxy` is given)."""
        port = self.proxy_port if proxy else self.port
        return smtp_send(host, port, sender, rcpts, data, helo=helo, proxy=proxy, timeout=timeout)

    def __enter__(self) -> "Postfix":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if os.environ.get("ACLMILTER_KEEP_TMP") != "1":
            self.remove()


def simple_message(sender: str = "alice@example.org", to: str = "bob@example.test",
                   subject: str = "test", body: str = "hello\n", extra_headers: Sequence[str] = ()
                   ) -> bytes:
    """A small RFC 5322 message with Message-ID and Date (CRLF line ends)."""
    import email.utils
    hdrs = [f"From: <{sender}>", f"To: <{to}>", f"Subject: {subject}",
            f"Date: {email.utils.formatdate()}",
            f"Message-ID: {email.utils.make_msgid(domain='example.org')}", *extra_headers]
    return ("\r\n".join(hdrs) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode("utf-8")


@contextlib.contextmanager
def postfix_instance(relay_port: int, milter: str | None = None, **kw: object) -> Iterator[Postfix]:
    """Start a Postfix for the block and stop it by PID afterwards (for module fixtures)."""
    pf = Postfix(relay_port, milter=milter, **kw)  # type: ignore[arg-type]
    pf.start()
    try:
        yield pf
    finally:
        pf.stop()
        # ACLMILTER_KEEP_TMP=1 keeps config, queue and maillog for a post-mortem
        if os.environ.get("ACLMILTER_KEEP_TMP") != "1":
            pf.remove()
