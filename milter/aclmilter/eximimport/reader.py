"""Read an Exim configuration the way Exim's readconf does, keeping file:line for every line.

Handles `.include` / `.include_if_exists` (relative names from the including file's
directory), `.ifdef` / `.ifndef` / `.elifdef` / `.elifndef` / `.else` / `.endif`, macro
definitions (`NAME = value` with an upper-case first letter, main section or anywhere
before use; `==` redefines) and their substitution, comments, and continuation lines (a
trailing backslash joins the next line with its leading white space removed).
What it cannot follow (an include that cannot be read, a bad directive) is reported.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

_MACRO_DEF = re.compile(r"^([A-Z][A-Za-z0-9_]*)\s*(==?)\s*(.*)$")
MAX_INCLUDE_DEPTH = 20


@dataclass(frozen=True)
class Line:
    """One logical configuration line and where it starts."""

    text: str
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Reader:
    macros: dict[str, str] = field(default_factory=dict)
    report: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)

    def read(self, path: str) -> list[Line]:
        """Every logical line of the configuration, macros substituted, in order."""
        self._file(path, 0)
        return self.lines

    def _substitute(self, text: str) -> str:
        if not self.macros:
            return text
        # longest names first, so a macro whose name starts another's does not cut it
        for name in sorted(self.macros, key=len, reverse=True):
            if name in text:
                text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])",
                              self.macros[name].replace("\\", "\\\\"), text)   # literal
        return text

    def _file(self, path: str, depth: int) -> None:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            raw = fh.read().split("\n")
        conds: list[tuple[bool, bool]] = []       # (this branch active, some branch taken)
        i = 0
        while i < len(raw):
            start = i + 1
            text = raw[i].rstrip()
            i += 1
            if text.lstrip().startswith("#"):
                continue
            while text.endswith("\\") and i < len(raw):
                nxt = raw[i].strip()
                i += 1
                if nxt.startswith("#"):
                    text = text[:-1] + "\\"       # a comment line inside a continuation is skipped
                    continue
                text = text[:-1] + nxt
            stripped = text.strip()
            if not stripped:
                continue
            active = all(c[0] for c in conds)
            if stripped.startswith("."):
                word, _, rest = stripped.partition(" ")
                rest = rest.strip()
                if word in (".ifdef", ".ifndef"):
                    hit = (rest in self.macros) == (word == ".ifdef")
                    conds.append((hit, hit))
                    continue
                if word in (".elifdef", ".elifndef") and conds:
                    taken = conds[-1][1]
                    hit = not taken and (rest in self.macros) == (word == ".elifdef")
                    conds[-1] = (hit, taken or hit)
                    continue
                if word == ".else" and conds:
                    conds[-1] = (not conds[-1][1], True)
                    continue
                if word == ".endif" and conds:
                    conds.pop()
                    continue
                if not active:
                    continue
                if word in (".include", ".include_if_exists"):
                    name = self._substitute(rest)
                    if not os.path.isabs(name):
                        name = os.path.join(os.path.dirname(path), name)
                    if depth >= MAX_INCLUDE_DEPTH:
                        self.report.append(f"{path}:{start}: .include nested deeper than {MAX_INCLUDE_DEPTH}: not followed")
                    elif word == ".include_if_exists" and not os.path.exists(name):
                        pass
                    else:
                        try:
                            self._file(name, depth + 1)
                        except OSError as exc:
                            self.report.append(f"{path}:{start}: cannot read included file {name}: {exc.strerror}")
                    continue
                self.report.append(f"{path}:{start}: directive {word} not understood: line ignored")
                continue
            if not active:
                continue
            m = _MACRO_DEF.match(stripped)
            if m and text[:1] not in (" ", "\t"):
                name, op, value = m.groups()
                if op == "==" or name not in self.macros:
                    self.macros[name] = self._substitute(value)
                continue
            self.lines.append(Line(self._substitute(stripped), path, start))
