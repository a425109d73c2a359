"""Documentation generated from the registry: `aclmilter policy show [NAME]`, the reference
tables of docs/policy.md and the man pages aclmilter(8) and aclmilter-policy(5).

The registry (registry.TABLES, filled by the feature modules) is the one source; nothing
here holds a description of its own. `python -m aclmilter.docgen --write` regenerates the
committed files, `--check` fails when they differ (the test suite runs the same check).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import conditions  # noqa: F401  - fills the registry
from .registry import TABLES
from .stages import ALL, ORDERED, Stage, names

#: the files this module writes, relative to the project root
MAN_SERVICE = "docs/man/aclmilter.8"
MAN_POLICY = "docs/man/aclmilter-policy.5"
POLICY_MD = "docs/policy.md"
BEGIN = "<!-- BEGIN generated from the registry (python -m aclmilter.docgen --write); do not edit -->"
END = "<!-- END generated from the registry -->"
#: a fixed date keeps the man pages reproducible (they change only when their text does)
MAN_DATE = "2026-12-07"


# ---- the registry as plain data --------------------------------------------------------------
def plain(value: Any) -> Any:
    """A default or setting value as YAML-able data: enums by value, dataclasses as mappings."""
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _stages(stages: Stage) -> str:
    return "all" if stages == ALL else ", ".join(names(stages))


def _doc(text: str) -> str:
    """A docstring as one paragraph (its lines joined)."""
    return " ".join(line.strip() for line in (text or "").strip().splitlines() if line.strip())


def item_data(name: str) -> dict:
    it = TABLES.items[name]
    out: dict[str, Any] = {"kind": it.kind.value, "stages": _stages(it.stages),
                           "argument": f"{it.list_kind} list" if it.list_kind else it.arg.value,
                           "description": _doc(it.doc)}
    if it.variables:
        out["variables"] = [f"${v}" for v in it.variables]
    if it.checks:
        out["checks"] = list(it.checks)
    return out


def control_data(name: str) -> dict:
    c = TABLES.controls[name]
    out: dict[str, Any] = {"kind": "control", "stages": _stages(c.stages),
                           "options": "yes" if c.takes_options else "no", "description": _doc(c.doc)}
    if c.aliases:
        out["aliases"] = list(c.aliases)
    if name != c.name:
        out["alias_of"] = c.name
    return out


def setting_data(name: str) -> dict:
    s = TABLES.settings[name]
    return {"kind": "setting", "default": plain(s.default), "description": _doc(s.doc)}


def variable_data(name: str) -> dict:
    v = TABLES.variables[name]
    return {"kind": "variable", "stages": _stages(v.stages), "description": _doc(v.doc)}


def check_data(name: str) -> dict:
    c = TABLES.checks[name]
    out: dict[str, Any] = {"kind": "check", "scope": c.scope, "description": _doc(c.doc)}
    if c.needs:
        out["needs"] = list(c.needs)
    return out


def lookup_data(name: str) -> dict:
    lk = TABLES.lookups[name]
    return {"kind": "lookup", "style": "query" if lk.query_style else "single-key",
            "description": _doc(lk.doc)}


class _Ours(dict):
    """The entries of one registry table that aclmilter itself registers, by name: a test
    that registers an item of its own (e.g. one that raises) never reaches the docs."""

    def __init__(self, table: dict, attr: str) -> None:
        super().__init__((n, e) for n, e in table.items()
                         if getattr(getattr(e, attr, None), "__module__", "").startswith("aclmilter."))


def project_items() -> dict:
    """The conditions and modifiers aclmilter registers (what the docs describe)."""
    return _Ours(TABLES.items, "run")


def _tables() -> tuple[tuple[str, dict, Any], ...]:
    return (("conditions and modifiers", project_items(), item_data),
            ("controls", _Ours(TABLES.controls, "run"), control_data),
            ("settings", _Ours(TABLES.settings, "parse"), setting_data),
            ("variables", _Ours(TABLES.variables, "get"), variable_data),
            ("checks", _Ours(TABLES.checks, "compute"), check_data),
            ("lookups", _Ours(TABLES.lookups, "find"), lookup_data))


def lookup_name(name: str) -> dict[str, dict]:
    """Every registry entry called `name` (`spf` is a condition and a check), by section."""
    name = name.lstrip("$")
    return {section: fn(name) for section, table, fn in _tables() if name in table}


def dump(data: Any) -> str:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False, allow_unicode=True, width=100)


def show(name: str | None = None) -> str:
    """`aclmilter policy show [NAME]` as YAML: one entry, or every entry by section."""
    if name:
        found = lookup_name(name)
        return dump({name.lstrip("$"): found}) if found else ""
    return dump({section: {n: fn(n) for n in sorted(table)} for section, table, fn in _tables()})


# ---- docs/policy.md ---------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _flow(value: Any) -> str:
    """A default as one line of YAML (flow style)."""
    text = yaml.safe_dump(plain(value), default_flow_style=True, width=10_000).strip()
    return text[:-4].strip() if text.endswith("\n...") else text


def policy_tables() -> str:
    """The generated reference tables (between BEGIN and END in docs/policy.md)."""
    items, controls, settings, variables, _checks, lookups = (t for _, t, _ in _tables())
    out = [BEGIN, "", "### Conditions and modifiers", "",
           "| name | kind | stages | argument | outcomes and meaning |", "|---|---|---|---|---|"]
    for n in sorted(items):
        d = item_data(n)
        out.append(f"| `{n}` | {d['kind']} | {d['stages']} | {d['argument']} | {_cell(d['description'])} |")
    out += ["", "### Controls", "", "| name | stages | options | meaning |", "|---|---|---|---|"]
    for n in sorted(set(c.name for c in controls.values())):
        d = control_data(n)
        alias = f" (also `{'`, `'.join(d['aliases'])}`)" if d.get("aliases") else ""
        out.append(f"| `{n}`{alias} | {d['stages']} | {d['options']} | {_cell(d['description'])} |")
    out += ["", "### Settings", "", "| name | default | meaning |", "|---|---|---|"]
    for n in sorted(settings):
        s = settings[n]
        out.append(f"| `{n}` | `{_cell(_flow(s.default))}` | {_cell(_doc(s.doc))} |")
    out += ["", "### Lookups", "", "| name | style | meaning |", "|---|---|---|"]
    for n in sorted(lookups):
        d = lookup_data(n)
        out.append(f"| `{n}` | {d['style']} | {_cell(d['description'])} |")
    out += ["", "### Feature variables", "", "| name | stages | meaning |", "|---|---|---|"]
    for n in sorted(variables):
        d = variable_data(n)
        out.append(f"| `${n}` | {d['stages']} | {_cell(d['description'])} |")
    out += ["", END]
    return "\n".join(out)


def with_tables(markdown: str) -> str:
    """docs/policy.md with the part between the markers regenerated (ValueError without them)."""
    start, end = markdown.find(BEGIN), markdown.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{POLICY_MD}: the generated-table markers are missing")
    return markdown[:start] + policy_tables() + markdown[end + len(END):]


# ---- man pages --------------------------------------------------------------------------------
def roff(text: str) -> str:
    """Text safe in a roff paragraph: backslashes, hyphens of options, leading dots/quotes."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def _header(name: str, section: str, title: str) -> list[str]:
    return [f'.\\" Generated by python -m aclmilter.docgen from the registry and the CLI; do not edit.',
            f'.TH {name.upper()} {section} "{MAN_DATE}" "aclmilter" "{title}"', ".SH NAME",
            f"{name} \\- {roff(title)}"]


def _options(parser: argparse.ArgumentParser) -> Iterable[str]:
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        flags = ", ".join(action.option_strings) or action.dest.upper()
        metavar = ""
        if action.option_strings and action.nargs != 0:
            metavar = " " + (action.metavar or (action.choices and "{" + ",".join(map(str, action.choices)) + "}")
                             or action.dest.upper())
        yield ".TP"
        yield f"\\fB{roff(flags)}\\fR{roff(metavar)}"
        help_text = (action.help or "") % {"default": action.default} if action.help else ""
        yield roff(help_text)


def man_service(parser: argparse.ArgumentParser) -> str:
    """aclmilter(8): every command and every option, from the argument parser."""
    out = _header("aclmilter", "8", "Exim-ACL policy milter for Postfix and Sendmail")
    out += [".SH SYNOPSIS", "\\fBaclmilter\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]", ".SH DESCRIPTION",
            roff("aclmilter applies a YAML policy with the semantics of Exim's ACLs to the mail an MTA "
                 "hands it over the milter protocol. The policy language is described in "
                 "aclmilter-policy(5)."), ".SH COMMANDS"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    for name, p in sub.choices.items():
        out += [".SS " + roff(f"aclmilter {name}"), roff(helps.get(name) or "")]
        out += list(_options(p))
    out += [".SH EXIT STATUS", roff("0 success; 1 the policy was refused; 2 usage error; "
                                    "3 the socket could not be opened or libmilter failed."),
            ".SH SEE ALSO", "aclmilter\\-policy(5), postconf(5)", ""]
    return "\n".join(out)


def man_policy() -> str:
    """aclmilter-policy(5): every condition, modifier, control, setting, lookup and variable."""
    items, controls, settings, variables, _checks, lookups = (t for _, t, _ in _tables())
    out = _header("aclmilter-policy", "5", "the aclmilter policy file")
    out += [".SH DESCRIPTION",
            roff("A policy is a YAML mapping with the keys settings, hostlist, domainlist, addresslist, "
                 "localpartlist and acl. Under acl, one ACL per stage (" + ", ".join(s.key for s in ORDERED)
                 + ") and named ACLs; each ACL is a list of statements `verb: {condition: argument, ...}` "
                 "with Exim's seven verbs accept, defer, deny, discard, drop, require and warn.")]
    out += [".SH CONDITIONS AND MODIFIERS"]
    for n in sorted(items):
        d = item_data(n)
        out += [".TP", f"\\fB{roff(n)}\\fR ({d['kind']}; stages: {roff(d['stages'])}; argument: {roff(d['argument'])})",
                roff(d["description"])]
    out += [".SH CONTROLS"]
    for n in sorted(set(c.name for c in controls.values())):
        d = control_data(n)
        out += [".TP", f"\\fB{roff(n)}\\fR (stages: {roff(d['stages'])})", roff(d["description"])]
    out += [".SH SETTINGS"]
    for n in sorted(settings):
        s = settings[n]
        out += [".TP", f"\\fB{roff(n)}\\fR (default: {roff(_flow(s.default))})", roff(_doc(s.doc))]
    out += [".SH LOOKUPS"]
    for n in sorted(lookups):
        d = lookup_data(n)
        out += [".TP", f"\\fB{roff(n)}\\fR ({d['style']})", roff(d["description"])]
    out += [".SH VARIABLES"]
    for n in sorted(variables):
        d = variable_data(n)
        out += [".TP", f"\\fB${roff(n)}\\fR", roff(d["description"] or "(see docs/policy.md)")]
    out += [".SH SEE ALSO", "aclmilter(8)", ""]
    return "\n".join(out)


# ---- the committed files ----------------------------------------------------------------------
def generated(root: Path) -> dict[str, str]:
    """{relative path: text it must have} for every generated file under `root`."""
    from .cli import build_parser       # the CLI imports this module: import it late
    return {MAN_SERVICE: man_service(build_parser()), MAN_POLICY: man_policy(),
            POLICY_MD: with_tables((root / POLICY_MD).read_text(encoding="utf-8"))}


def stale(root: Path) -> list[str]:
    """The generated files whose committed text differs from what the registry gives."""
    out = []
    for rel, text in generated(root).items():
        path = root / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(rel)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aclmilter.docgen", description=__doc__)
    p.add_argument("--root", default=".", help="project root (default: the current directory)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="rewrite the generated files")
    g.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    args = p.parse_args(argv)
    root = Path(args.root)
    if args.write:
        for rel, text in generated(root).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text, encoding="utf-8")
        return 0
    bad = stale(root)
    for rel in bad:
        print(f"{rel}: differs from the registry; run python -m aclmilter.docgen --write", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
