"""The frozen policy model the engine evaluates. Built only by policy.loader."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from ..errors import Mark
from ..outcome import Verb
from ..registry import Item


@dataclass(frozen=True)
class ItemUse:
    """One condition or modifier inside a statement, with its pre-parsed argument.

    `expansion` is the parsed argument (expand.Expansion) for EXPANDED/DEFERRED items, the
    parsed list (lists.ListSpec) for LIST items, or None for RAW. `static` holds the result of
    the item's parser when the argument has no `$` (parsed once at load).
    """

    entry: Item
    negated: bool
    text: str
    mark: Mark
    expansion: Any = None
    static: Any = None
    has_static: bool = False

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass(frozen=True)
class Statement:
    verb: Verb
    items: tuple[ItemUse, ...]
    mark: Mark

    @functools.cached_property
    def where(self) -> str:
        """file:line of the statement (computed once: it is read on every evaluation)."""
        return f"{self.mark.file}:{self.mark.line}"


@dataclass(frozen=True)
class Acl:
    name: str
    statements: tuple[Statement, ...]
    mark: Mark


@dataclass(frozen=True)
class Policy:
    """A loaded policy: settings (validated, defaults filled), named lists, ACLs by name."""

    file: str
    settings: dict[str, Any]
    lists: dict[str, dict[str, Any]]          # kind -> name -> lists.ListSpec
    acls: dict[str, Acl]                      # stage keys and named ACLs
    source_text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)   # feature sections (verdict profiles, ...)

    def acl_for(self, stage_key: str) -> Acl | None:
        return self.acls.get(stage_key)
