"""`aclmilter import-exim`: translate an Exim configuration's ACLs into a policy.

`translate(path)` reads the configuration (reader), splits it (translate.parse), builds the
policy mapping, checks every statement and setting with the policy loader, and returns the
YAML (PyYAML's safe dumper: every string safely quoted) and a report, one line per thing
not translated, each with the Exim file:line and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from .. import conditions  # noqa: F401  (registers settings, conditions, lookups)
from ..errors import PolicyErrors
from ..policy.loader import load_text
from ..registry import TABLES
from .reader import Reader
from .translate import STAGE_OPTIONS, Config, parse

#: ACL options Exim has and a milter has no step for (or the MTA handles).
_OTHER_ACLS = ("acl_smtp_mime", "acl_smtp_dkim", "acl_smtp_quit", "acl_smtp_notquit", "acl_smtp_auth",
               "acl_smtp_vrfy", "acl_smtp_expn", "acl_smtp_etrn", "acl_smtp_starttls", "acl_smtp_mailauth",
               "acl_smtp_wellknown", "acl_smtp_atrn", "acl_not_smtp", "acl_not_smtp_mime", "acl_not_smtp_start")
#: Exim main options whose aclmilter setting has another name.
_OPTION_ALIASES = {"hosts_proxy": "proxy_required_hosts"}
_STAGE_KEYS = frozenset(("connect", "helo", "mail", "rcpt", "predata", "data", "deliver"))
_ACL_REF = re.compile(r"^\s*(\S+)")


@dataclass
class ImportResult:
    policy: dict
    yaml: str
    report: list[str]
    statements: int          # ACL statements read
    translated: int          # ACL statements in the policy


def _dump(policy: dict) -> str:
    return yaml.safe_dump(policy, sort_keys=False, allow_unicode=True, default_flow_style=False,
                          width=1 << 16)


def _loads(policy: dict) -> list[str]:
    """The loader's errors for this policy ([] when it loads)."""
    try:
        load_text(_dump(policy), "<import>")
    except PolicyErrors as exc:
        return [e.message for e in exc.errors]
    return []


def _settings(cfg: Config, report: list[str]) -> dict[str, Any]:
    # Exim-faithful replies: no enhanced code unless the message gives one, long texts split
    settings: dict[str, Any] = {"enhanced_status_codes": "as_given", "split_long_replies": True}
    for name, (value, where) in cfg.options.items():
        if name in STAGE_OPTIONS:
            continue
        name = _OPTION_ALIASES.get(name, name)
        if name in _OTHER_ACLS:
            report.append(f"{where}: {name}: a milter has no step for this ACL: not translated")
            continue
        if name not in TABLES.settings:
            report.append(f"{where}: main option {name}: MTA-only, not translated")
            continue
        errors = _loads({"settings": {name: value}})
        if errors:
            report.append(f"{where}: main option {name}: not translated: {errors[0]}")
        else:
            settings[name] = value
    return settings


def _lists(cfg: Config, report: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for kind, named in cfg.lists.items():
        for name, (value, where) in named.items():
            errors = _loads({kind: {name: value}})
            if errors:
                report.append(f"{where}: {kind} {name}: not translated: {errors[0]}")
                continue
            out.setdefault(kind, {})[name] = value
    return out


def _called(cfg: Config) -> set[str]:
    """Names of ACLs called with `acl = name` from any statement."""
    names = set()
    for stmts in cfg.acls.values():
        for st in stmts:
            for key, value in st.items:
                if key.lstrip("!") == "acl" and isinstance(value, str):
                    m = _ACL_REF.match(value)
                    if m:
                        names.add(m.group(1))
    return names


def translate(path: str) -> ImportResult:
    reader = Reader()
    cfg = parse(reader.read(path))
    report = list(reader.report) + list(cfg.report)
    settings = _settings(cfg, report)
    lists = _lists(cfg, report)
    base: dict[str, Any] = {"settings": settings, **lists}
    acl: dict[str, list] = {}
    plan: list[tuple[str, str]] = []            # (policy key, Exim ACL name)
    for option, stage in STAGE_OPTIONS.items():
        if option not in cfg.options:
            if option == "acl_smtp_rcpt":
                acl["rcpt"] = ["deny"]
                report.append(f"{path}: no acl_smtp_rcpt: Exim's default (deny every recipient) "
                              "written as a rcpt ACL of one `deny`")
            continue
        value, where = cfg.options[option]
        if value in cfg.acls:
            plan.append((stage, value))
        else:
            report.append(f"{where}: {option} = {value}: not the name of an ACL of this configuration "
                          "(inline ACL text and expansions are not translated)")
    for name in sorted(_called(cfg)):
        if name not in cfg.acls:
            continue
        if name in _STAGE_KEYS:
            report.append(f"{cfg.acl_where[name]}: ACL {name!r} has the name of a policy stage: not translated")
            continue
        plan.append((name, name))
    stubs = {key: ["accept"] for key, _ in plan}
    statements = sum(len(v) for v in cfg.acls.values())
    used = {name for _, name in plan}
    for name, where in cfg.acl_where.items():
        if name not in used:
            report.append(f"{where}: ACL {name} is not used by any acl_smtp_* option or `acl =`: not translated")
    translated = 0
    for key, name in plan:
        out: list[Any] = []
        for st in cfg.acls[name]:
            if st.problems:
                report.extend(f"{p} (statement {st.where} not translated)" for p in st.problems)
                continue
            trial = {**base, "acl": {**stubs, key: [st.as_yaml()]}}
            errors = _loads(trial)
            if errors:
                report.append(f"{st.where}: {st.verb} statement not translated: " + "; ".join(errors))
                continue
            out.append(st.as_yaml())
        acl[key] = out
        translated += len(out)
        if cfg.acls[name] and not out:
            report.append(f"{cfg.acl_where[name]}: ACL {name}: no statement translated; it is kept empty, "
                          "so it denies (Exim's implicit deny at the end of an ACL)")
    policy = {**base, "acl": acl}
    for err in _loads(policy):
        report.append(f"{path}: the translated policy still has an error: {err}")
    return ImportResult(policy, _dump(policy), report, statements, translated)


__all__ = ["ImportResult", "translate"]
