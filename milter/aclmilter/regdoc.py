# SPDX-License-Identifier: GPL-3.0-or-later
"""The registry as plain data: what `aclmilter policy show [NAME]` prints.

The registry (registry.TABLES, filled by the feature modules imported here) is the one
source; docgen.py renders the same data into docs/policy.md and the man pages.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import yaml

from . import conditions  # noqa: F401  - fills the registry
from .registry import TABLES
from .stages import ALL, Stage, names


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


def doc_text(text: str) -> str:
    """A docstring as one paragraph (its lines joined)."""
    return " ".join(line.strip() for line in (text or "").strip().splitlines() if line.strip())


def item_data(name: str) -> dict:
    it = TABLES.items[name]
    out: dict[str, Any] = {"kind": it.kind.value, "stages": _stages(it.stages),
                           "argument": f"{it.list_kind} list" if it.list_kind else it.arg.value,
                           "description": doc_text(it.doc)}
    if it.variables:
        out["variables"] = [f"${v}" for v in it.variables]
    if it.checks:
        out["checks"] = list(it.checks)
    return out


def control_data(name: str) -> dict:
    c = TABLES.controls[name]
    out: dict[str, Any] = {"kind": "control", "stages": _stages(c.stages),
                           "options": "yes" if c.takes_options else "no", "description": doc_text(c.doc)}
    if c.aliases:
        out["aliases"] = list(c.aliases)
    if name != c.name:
        out["alias_of"] = c.name
    return out


def setting_data(name: str) -> dict:
    s = TABLES.settings[name]
    return {"kind": "setting", "default": plain(s.default), "description": doc_text(s.doc)}


def variable_data(name: str) -> dict:
    v = TABLES.variables[name]
    return {"kind": "variable", "stages": _stages(v.stages), "description": doc_text(v.doc)}


def check_data(name: str) -> dict:
    c = TABLES.checks[name]
    out: dict[str, Any] = {"kind": "check", "scope": c.scope, "description": doc_text(c.doc)}
    if c.needs:
        out["needs"] = list(c.needs)
    return out


def lookup_data(name: str) -> dict:
    lk = TABLES.lookups[name]
    return {"kind": "lookup", "style": "query" if lk.query_style else "single-key",
            "description": doc_text(lk.doc)}


class _Ours(dict):
    """The entries of one registry table that aclmilter itself registers, by name: a test
    that registers an item of its own (e.g. one that raises) never reaches the docs."""

    def __init__(self, table: dict, attr: str) -> None:
        super().__init__((n, e) for n, e in table.items()
                         if getattr(getattr(e, attr, None), "__module__", "").startswith("aclmilter."))


def project_items() -> dict:
    """The conditions and modifiers aclmilter registers (what the docs describe)."""
    return _Ours(TABLES.items, "run")


def registry_tables() -> tuple[tuple[str, dict, Any], ...]:
    return (("conditions and modifiers", project_items(), item_data),
            ("controls", _Ours(TABLES.controls, "run"), control_data),
            ("settings", _Ours(TABLES.settings, "parse"), setting_data),
            ("variables", _Ours(TABLES.variables, "get"), variable_data),
            ("checks", _Ours(TABLES.checks, "compute"), check_data),
            ("lookups", _Ours(TABLES.lookups, "find"), lookup_data))


def lookup_name(name: str) -> dict[str, dict]:
    """Every registry entry called `name` (`spf` is a condition and a check), by section."""
    name = name.lstrip("$")
    return {section: fn(name) for section, table, fn in registry_tables() if name in table}


def dump(data: Any) -> str:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False, allow_unicode=True, width=100)


def show(name: str | None = None) -> str:
    """`aclmilter policy show [NAME]` as YAML: one entry, or every entry by section."""
    if name:
        found = lookup_name(name)
        return dump({name.lstrip("$"): found}) if found else ""
    return dump({section: {n: fn(n) for n in sorted(table)} for section, table, fn in registry_tables()})


# ---- docs/policy.md ---------------------------------------------------------------------------
