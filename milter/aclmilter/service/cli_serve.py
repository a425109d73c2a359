"""`aclmilter serve`: load the policy, open the socket, run libmilter (optionally pre-forked).

Exit codes: 0 stopped normally, 1 policy refused at start, 2 usage error, 3 socket or
libmilter failure. Reload: SIGUSR1 (systemd ExecReload); SIGTERM/SIGINT/SIGHUP stop.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from typing import Any

from .. import __version__
from ..errors import PolicyErrors
from ..hostname import configured_or_system, lacks_dot
from . import logline, logsetup, socketspec

log = logging.getLogger("aclmilter")

#: Inside Postfix's queue directory, where Debian's chrooted smtpd finds it as
#: `unix:/aclmilter/aclmilter.sock`; the package creates the directory (aclmilter:postfix 0750).
DEFAULT_SOCKET = "unix:/var/spool/postfix/aclmilter/aclmilter.sock"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the `serve` options on the sub-parser the main CLI gives us."""
    p.add_argument("--policy", required=True, help="YAML policy file")
    p.add_argument("--socket", default=DEFAULT_SOCKET,
                   help="unix:/path, inet:PORT@HOST or inet6:PORT@HOST (default %(default)s)")
    p.add_argument("--socket-mode", default="0660", help="unix socket mode, octal (default %(default)s)")
    p.add_argument("--socket-group", default=None, help="unix socket group (e.g. postfix)")
    p.add_argument("--dry-run", action="store_true", default=None,
                   help="monitor mode: every header is added, but nothing is refused, discarded, "
                        "quarantined or re-routed; the first refusal not given is named in a header "
                        "(same as settings.dry_run: true)")
    p.add_argument("--metrics", default=None, metavar="ADDR:PORT",
                   help="serve Prometheus metrics there (off by default)")
    p.add_argument("--workers", type=int, default=1,
                   help="pre-forked worker processes under a supervising master (default 1: one "
                        "process, unless --supervise)")
    p.add_argument("--supervise", action="store_true",
                   help="run even a single worker under the supervising master, which restarts a "
                        "crashed worker within a second (implied by --workers 2 or more)")
    p.add_argument("--syslog", action="store_true", help="also log to syslog (facility mail)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="lowest level logged (default %(default)s; the message lines are info)")
    p.add_argument("--log-format", default="logfmt", choices=logline.FORMATS,
                   help="format of the one line per message: logfmt key=value pairs, values with "
                        "spaces double-quoted (default), or one JSON object")
    p.add_argument("--timeout", type=int, default=600,
                   help="seconds libmilter waits for the MTA before closing (default %(default)s)")
    p.add_argument("--backlog", type=int, default=128, help="listen backlog (default %(default)s)")
    p.add_argument("--name", default="aclmilter", help="milter name (Sendmail X line)")


def _warn_short_hostname(settings: dict) -> None:
    """Log a warning when the name used without the MTA's `j` macro is not qualified."""
    name = configured_or_system(settings)
    if lacks_dot(name):
        log.warning("primary host name %r has no dot: reports and Received-SPF would name it "
                    "when the MTA sends no `j` macro; set settings.primary_hostname or give "
                    "this host a fully qualified name", name)


def _reload(runtime: Any, metrics: Any) -> None:
    errors = runtime.reload()
    if metrics is not None:
        metrics.reload(not errors)
    if errors:
        log.error("reload refused (%d error(s)); the old policy stays in force", len(errors))


def _master_reload(runtime: Any) -> None:
    """The master's copy of the policy follows every reload, for the workers it forks later."""
    if runtime.reload():
        log.error("master: reload refused; workers forked from now on keep the policy in force")


def _serve_one(runtime: Any, metrics: Any) -> int:
    """Run smfi_main in this process until libmilter is told to stop."""
    import milter

    from . import reloader
    if metrics is not None:
        runtime.metrics = metrics
        runtime.current().services.metrics = metrics
    reloader.install(lambda: _reload(runtime, metrics))
    log.info("serving (pid %d)", os.getpid())
    try:
        milter.main()
    except milter.error as exc:
        log.error("libmilter stopped with an error: %s", exc)
        return 3
    log.info("stopped (pid %d)", os.getpid())
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point for `aclmilter serve`; returns the process exit code."""
    logsetup.setup(args.log_level, args.syslog)
    log.info("aclmilter %s starting", __version__)
    try:
        spec = socketspec.parse(args.socket)
        mode = socketspec.parse_mode(args.socket_mode)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if args.workers < 1:
        log.error("--workers must be at least 1")
        return 2
    supervised = args.workers > 1 or args.supervise
    metrics_addr = None
    mp_dir = None
    if args.metrics:
        if supervised:
            # must be set before prometheus_client is first imported: it picks its value
            # class (in-memory or per-process files) at import time
            mp_dir = tempfile.mkdtemp(prefix="aclmilter-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = mp_dir
        from .metrics import parse_addr
        try:
            metrics_addr = parse_addr(args.metrics)
        except ValueError as exc:
            log.error("%s", exc)
            if mp_dir:
                shutil.rmtree(mp_dir, ignore_errors=True)
            return 2

    from ..runtime import Runtime
    runtime = Runtime(args.policy, monitor=True if args.dry_run else None)
    try:
        runtime.load()
    except PolicyErrors as exc:
        for e in exc.errors:
            log.error("%s", e)
        log.error("%s: policy refused, not starting", args.policy)
        return 1
    except OSError as exc:
        log.error("%s: cannot read: %s", args.policy, exc.strerror)
        return 1
    from ..policy.eximdiff import warnings
    for line in warnings(runtime.current().policy):   # what `aclmilter check` warns about
        log.warning("%s", line)

    import milter

    from . import glue, netopts, preflight
    glue_config = glue.GlueConfig(runtime, listen_port=spec.listen_port, unix_socket=spec.kind == "unix",
                                  log_format=args.log_format)
    glue.register(args.name, glue_config)
    milter.setconn(spec.libmilter)
    milter.settimeout(args.timeout)
    milter.setbacklog(args.backlog)
    try:
        preflight.check_group(args.socket_group)
        preflight.check(spec)
    except preflight.SocketProblem as exc:
        log.error("cannot listen: %s", exc)
        return 3
    old_umask = os.umask(0o117)
    try:
        milter.opensocket(True)
    except milter.error as exc:
        log.error("cannot open %s: %s", spec, exc)
        return 3
    finally:
        os.umask(old_umask)
    try:
        socketspec.apply_unix_permissions(spec, mode, args.socket_group)
    except (OSError, KeyError) as exc:
        log.error("cannot set mode/group on %s: %s", spec.path, exc)
        return 3
    nodelay = netopts.set_nodelay_on_listener(spec)
    log.info("listening on %s%s, policy %s%s", spec, " (TCP_NODELAY)" if nodelay else "",
             args.policy, ", DRY RUN" if runtime.monitor else "")
    log.info("policy %s", runtime.current().needs.summary())
    _warn_short_hostname(runtime.current().policy.settings)

    try:
        if not supervised:
            metrics = None
            if metrics_addr:
                from .metrics import Metrics, start_server
                metrics = Metrics()
                start_server(metrics_addr)
            return _serve_one(runtime, metrics)

        from . import workers
        from .liveconns import LiveConnections

        sup = workers.Supervision(live=LiveConnections(args.workers),
                                  on_reload=lambda: _master_reload(runtime))
        glue_config.live = sup.live
        if metrics_addr:
            from .metrics import SupervisorMetrics
            sm = SupervisorMetrics()
            sup.on_death, sup.on_restart = sm.worker_died, sm.worker_restarted

        def child() -> int:
            m = None
            if metrics_addr:
                from .metrics import Metrics
                m = Metrics()
            return _serve_one(runtime, m)

        def after_fork() -> None:
            # the merged metrics endpoint runs in the parent, started only after the first
            # forks so no server thread is ever copied into a worker at start
            if metrics_addr:
                from .metrics import start_server
                start_server(metrics_addr, mp_dir)

        return workers.run(args.workers, child, after_fork,
                           nudge=lambda: socketspec.wake_listener(spec), sup=sup)
    finally:
        if spec.kind == "unix" and supervised:
            try:
                os.unlink(spec.path)
            except FileNotFoundError:
                pass
        if mp_dir:
            shutil.rmtree(mp_dir, ignore_errors=True)

