"""Turn the lines of an Exim configuration into a policy mapping, and report what does not fit.

Main section: `acl_smtp_*` choose the stage ACLs (a missing `acl_smtp_rcpt` becomes Exim's
default: deny every recipient); `hostlist`/`domainlist`/`addresslist`/`localpartlist`
(also `_cache`) become named lists; options that are aclmilter settings are copied; every
other option is reported as MTA-only. ACL section: every statement with its verb, items
and `!`, in order. Each statement is checked with the policy loader on its own; one the
loader refuses is left out and reported with its Exim file:line and the loader's reason.
Nothing is left out without a report line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .reader import Line

VERBS = ("accept", "defer", "deny", "discard", "drop", "require", "warn")
LIST_KINDS = ("hostlist", "domainlist", "addresslist", "localpartlist")
#: Exim's ACL options -> policy stage keys.
STAGE_OPTIONS = {"acl_smtp_connect": "connect", "acl_smtp_helo": "helo", "acl_smtp_mail": "mail",
                 "acl_smtp_rcpt": "rcpt", "acl_smtp_predata": "predata", "acl_smtp_data": "data"}
_ITEM = re.compile(r"^(!?)\s*([a-z_][a-z0-9_]*)\s*(?:=\s*(.*))?$", re.S)
_SET = re.compile(r"^set\s+(acl_[cm]_?\w+)\s*=\s*(.*)$", re.S)


@dataclass
class Statement:
    verb: str
    where: str
    items: list[tuple[str, Any]] = field(default_factory=list)   # (key with "!", value)
    problems: list[str] = field(default_factory=list)

    def as_yaml(self) -> dict:
        body: list[Any] = []
        for key, value in self.items:
            body.append("endpass" if key == "endpass" else {key: value})
        return {self.verb: body} if body else self.verb  # type: ignore[return-value]


@dataclass
class Config:
    """What was read: main options (name -> (value, where)), lists, ACLs in order."""

    options: dict[str, tuple[str, str]] = field(default_factory=dict)
    lists: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    acls: dict[str, list[Statement]] = field(default_factory=dict)
    acl_where: dict[str, str] = field(default_factory=dict)
    report: list[str] = field(default_factory=list)


def _item(text: str, where: str, st: Statement) -> None:
    """Parse one `[!]name [= value]` line into the statement."""
    m = _SET.match(text)
    if m:
        st.items.append(("set", f"{m.group(1)} = {m.group(2).strip()}"))
        return
    m = _ITEM.match(text)
    if not m:
        st.problems.append(f"{where}: cannot parse ACL item {text!r}")
        return
    neg, name, value = m.groups()
    if value is None:
        if name == "endpass" and not neg:
            st.items.append(("endpass", None))
            return
        st.problems.append(f"{where}: ACL item {name!r} has no value")
        return
    st.items.append((f"{neg}{name}", value.strip()))


def parse(lines: list[Line]) -> Config:
    """Split the configuration into main options, named lists and ACLs."""
    cfg = Config()
    section = "main"
    current: list[Statement] | None = None
    for ln in lines:
        text = ln.text
        low = text.lower()
        if low.startswith("begin "):
            section = low.split()[1]
            current = None
            continue
        if section == "main":
            words = text.split(None, 1)
            kind = words[0].replace("_cache", "") if words else ""
            if kind in LIST_KINDS and len(words) == 2:
                name, _, value = words[1].partition("=")
                cfg.lists.setdefault(kind, {})[name.strip()] = (value.strip(), ln.where)
                continue
            name, sep, value = text.partition("=")
            name = name.strip()
            if not sep:                      # boolean options: `name` / `no_name` / `not_name`
                value, name = ("false", name[3:]) if name.startswith("no_") else ("true", name)
            cfg.options[name] = (value.strip(), ln.where)
            continue
        if section != "acl":
            continue
        if re.fullmatch(r"[A-Za-z0-9_-]+\s*:", text):
            name = text[:-1].strip()
            current = cfg.acls.setdefault(name, [])
            cfg.acl_where[name] = ln.where
            continue
        if current is None:
            cfg.report.append(f"{ln.where}: ACL text outside any named ACL: not translated")
            continue
        parts = text.split(None, 1)
        word, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        if word in VERBS:
            st = Statement(word, ln.where)
            current.append(st)
            if rest.strip():
                _item(rest.strip(), ln.where, st)
            continue
        if not current:
            cfg.report.append(f"{ln.where}: ACL item before any verb: not translated")
            continue
        _item(text, ln.where, current[-1])
    return cfg
