"""Command line: `aclmilter serve | check | test | policy show`."""

from __future__ import annotations

import argparse
import logging
import sys
import types
from typing import TYPE_CHECKING, Sequence

from . import __version__
from .errors import PolicyErrors

if TYPE_CHECKING:
    from .runtime import Runtime

EXIT_OK, EXIT_POLICY, EXIT_USAGE = 0, 1, 2


def _cmd_check(args: argparse.Namespace) -> int:
    from .policy.loader import load_file
    from .policy import eximdiff
    from .policy.needs import analyse
    status = EXIT_OK
    for path in args.policy:
        try:
            policy = load_file(path)
        except PolicyErrors as exc:
            for e in exc.errors:
                print(str(e), file=sys.stderr)
            print(f"{path}: {len(exc.errors)} error(s); policy refused", file=sys.stderr)
            status = EXIT_POLICY
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
            status = EXIT_POLICY
        else:
            if not args.quiet:
                print(f"{path}: OK")
                print(f"  MTA steps: {analyse(policy).summary()}")
            for line in eximdiff.warnings(policy):
                print(line, file=sys.stderr)
    return status


def _parse_macros(items: list[str]) -> dict[str, str]:
    macros: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"aclmilter test: --macro needs NAME=VALUE, got {item!r}")
        name = name.strip()
        if len(name) > 1 and not name.startswith("{"):
            name = "{" + name + "}"
        macros[name] = value
    return macros


def _cmd_test(args: argparse.Namespace) -> int:
    from .dryrun import SessionSpec, read_message_file, simulate
    runtime = _load_runtime(args.policy, update=args.update)
    if runtime is None:
        return EXIT_POLICY
    spec = SessionSpec(client_ip=args.client_ip, sender=args.sender, rcpts=args.rcpt, helo=args.helo,
                       client_name=args.client_name, client_port=args.client_port,
                       macros=_parse_macros(args.macro), queue_id=args.queue_id)
    if args.message:
        try:
            spec.headers, spec.body = read_message_file(args.message)
        except OSError as exc:
            print(f"{args.message}: cannot read: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
    report = simulate(runtime, spec)
    if args.json:
        import json     # only for --json: not a start-up cost of every command (issue 23)
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_trace(report)
    return EXIT_OK


def _load_runtime(path: str, update: bool = False) -> Runtime | None:
    """A loaded simulation Runtime for the dry-run commands (`test`, `bh`): no writes to shared
    state unless `update`; None after printing why the policy cannot be loaded."""
    from .runtime import Runtime
    runtime = Runtime(path, monitor=False, simulate=True, update=update)
    try:
        runtime.load()
    except PolicyErrors as exc:
        for e in exc.errors:
            print(str(e), file=sys.stderr)
        return None
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return None
    return runtime


def _cmd_bh(args: argparse.Namespace) -> int:
    from .bh import Dialogue, Mta
    runtime = _load_runtime(args.policy, update=args.update)
    if runtime is None:
        return EXIT_POLICY
    d = Dialogue(runtime, args.client_ip, Mta(args.mta), debug=args.debug)
    for line in d.run(sys.stdin):
        print(line)
    for line in d.trace:
        print(line, file=sys.stderr)
    return EXIT_OK


def _cmd_import_exim(args: argparse.Namespace) -> int:
    from .eximimport import translate
    try:
        result = translate(args.config)
    except OSError as exc:
        print(f"{args.config}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(result.yaml)
    else:
        sys.stdout.write(result.yaml)
    for item in result.report:
        print(item, file=sys.stderr)
    print(f"{args.config}: {result.statements} ACL statement(s), {len(result.report)} item(s) not translated",
          file=sys.stderr)
    return EXIT_OK


def _print_trace(report: dict) -> None:
    for rec in report["stages"]:
        title = rec["stage"] + (f" <{rec['recipient']}>" if rec["recipient"] else "")
        print(f"== {title}")
        for t in rec["trace"]:
            res = f"  -> {t['result']}" if t["result"] else ""
            print(f"   {t['where']}: {t['what']}{res}")
        for line in rec["log_lines"]:
            print(f"   log: {line}")
        print(f"   decision: {rec['decision']} ({rec['where']})" + (f"  reply: {rec['reply']}" if rec["reply"] else ""))
    print("== replies")
    for s in report["steps"]:
        who = f" <{s['recipient']}>" if s["recipient"] else ""
        print(f"   {s['stage']}{who}: {s['action']}" + (f"  {s['reply']}" if s["reply"] else "")
              + ("  (connection dropped)" if s["drop"] else ""))
    if report["edits"]:
        e = report["edits"]
        for h in e["headers_added"]:
            print(f"   add header {h['position']} {h['name']}: {h['value']}")
        for h in report["header_changes"]:
            print(f"   remove header {h[0]} #{h[1]}")
        for r in e["recipients_deleted"]:
            print(f"   delete recipient {r}")
        for r in e["recipients_added"]:
            print(f"   add recipient <{r['address']}> {' '.join(r['params'])}")
        if e["quarantine"]:
            print(f"   quarantine: {e['quarantine']}")


def _cmd_show(args: argparse.Namespace) -> int:
    """Print the registry as YAML: every entry, or every entry called NAME (regdoc.show)."""
    from .regdoc import show
    text = show(args.name)
    if not text:
        print(f"aclmilter policy show: no condition, modifier, control, setting, variable, check or "
              f"lookup is called {args.name!r}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(text)
    return EXIT_OK


#: Commands that never serve: their start-up does not import the service (issue 23: they start
#: in well under 150 ms; `serve`'s arguments are then simply not offered).
_NOT_SERVING = frozenset({"check", "test", "bh", "import-exim", "policy"})


def build_parser(serve: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aclmilter", description=__doc__)
    p.add_argument("--version", action="version", version=f"aclmilter {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="validate policy files; every error as file:line:column")
    c.add_argument("policy", nargs="+", help="policy files to check (YAML)")
    c.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing for a valid policy (errors still go to stderr; the exit code tells)")
    c.set_defaults(func=_cmd_check)
    t = sub.add_parser("test", help="dry-run one SMTP session through the policy (like exim -bh)")
    t.add_argument("--policy", required=True, help="YAML policy file")
    t.add_argument("--client-ip", required=True, help="the SMTP client's IP address ($sender_host_address)")
    t.add_argument("--client-name", default="",
                   help="the client's verified host name ($sender_host_name; default: none)")
    t.add_argument("--client-port", type=int, default=0, help="the client's TCP port (default: unknown)")
    t.add_argument("--helo", default="", help="HELO/EHLO name (default: the client name or [IP])")
    t.add_argument("--from", dest="sender", required=True, help="envelope sender; empty for <>")
    t.add_argument("--rcpt", action="append", default=[], required=True,
                   help="envelope recipient; repeat for several")
    t.add_argument("--message", help="an .eml file to use as the message")
    t.add_argument("--macro", action="append", default=[], help="NAME=VALUE MTA macro (e.g. daemon_name=proxied)")
    t.add_argument("--queue-id", default="TESTQID", help="MTA queue id to pretend ($message_exim_id; "
                   "default %(default)s)")
    t.add_argument("--update", action="store_true",
                   help="also write ratelimit updates and Redis write commands, as the service would "
                        "(default: computed and shown, never written)")
    t.add_argument("--json", action="store_true",
                   help="print the report as one JSON object (every variable per stage) instead of the trace")
    t.set_defaults(func=_cmd_test)
    b = sub.add_parser("bh", help="replay an SMTP dialogue from standard input (like exim -bh)")
    b.add_argument("--policy", default="/etc/aclmilter/policy.yaml", help="YAML policy file (default %(default)s)")
    b.add_argument("--mta", choices=["postfix", "exim"], default="postfix",
                   help="whose replies to show: Postfix with aclmilter attached (default) or Exim's")
    b.add_argument("-d", dest="debug", action="store_true", help="ACL trace with file:line on standard error")
    b.add_argument("--update", action="store_true",
                   help="also write ratelimit updates and Redis write commands, as the service would "
                        "(default: computed and shown, never written)")
    b.add_argument("client_ip", help="the SMTP client's IP address the dialogue comes from")
    b.set_defaults(func=_cmd_bh)
    x = sub.add_parser("import-exim", help="translate an Exim configuration's ACLs into a policy")
    x.add_argument("config", help="the Exim configuration file (.include files are followed)")
    x.add_argument("-o", dest="output", help="write the policy here (default: standard output)")
    x.set_defaults(func=_cmd_import_exim)
    s = sub.add_parser("policy", help="show what the policy language offers")
    s.add_argument("what", choices=["show"], help="show: print the registry as YAML")
    s.add_argument("name", nargs="?", default=None,
                   help="only the entries with this name (a condition, modifier, control, setting, "
                        "variable, check or lookup; e.g. spf)")
    s.set_defaults(func=_cmd_show)
    cli_serve: types.ModuleType | None = None
    if serve:
        try:
            from .service import cli_serve
        except ImportError:
            cli_serve = None
    if cli_serve is not None:
        sv = sub.add_parser("serve", help="run the milter")
        cli_serve.add_arguments(sv)
        sv.set_defaults(func=cli_serve.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="aclmilter: %(levelname)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(serve=first not in _NOT_SERVING).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
