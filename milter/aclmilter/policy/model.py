"""The frozen policy model the engine evaluates. Built only by policy.loader."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..errors import Mark
from ..outcome import Verb
from ..registry import COMMANDS, TABLES, CommandHook, EomHook, Item, command_hooks, hooks
from ..stages import ORDERED, Stage


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

    @functools.cached_property
    def steps(self) -> tuple[tuple[int, ItemUse], ...]:
        """The items in order as (STEP_*, item): what the engine does at each, decided once."""
        kinds = {"endpass": STEP_ENDPASS, "message": STEP_MESSAGE, "log_message": STEP_LOG_MESSAGE}
        return tuple((kinds.get(use.name, STEP_EVALUATE), use) for use in self.items)


#: What the engine does at one item of a statement (Statement.steps).
STEP_EVALUATE, STEP_ENDPASS, STEP_MESSAGE, STEP_LOG_MESSAGE = range(4)


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

    def uses(self) -> Iterator[tuple[Statement, ItemUse]]:
        """Every item of every ACL (named ones too), with its statement."""
        for acl in self.acls.values():
            for st in acl.statements:
                for use in st.items:
                    yield st, use

    def uses_control(self, name: str) -> bool:
        """True if some ACL may set control `name` (a control computed at run time may be any)."""
        for _st, use in self.uses():
            if use.name == "control":
                entry = TABLES.controls.get(use.static[0]) if use.has_static else None
                if entry is None or entry.name == name:     # unknown now: could be any
                    return True
        return False

    def eom_hooks(self, phase: str) -> tuple[EomHook, ...]:
        """The end-of-message hooks of `phase` that can act under this policy, in order."""
        return self._eom_hooks[phase]

    @functools.cached_property
    def _eom_hooks(self) -> dict[str, tuple[EomHook, ...]]:
        return {phase: tuple(h for h in hooks(phase) if h.wanted is None or h.wanted(self))
                for phase in ("after_data", "after_deliver")}

    def command_hooks(self, command: str) -> tuple[CommandHook, ...]:
        """The command hooks (registry.command_hook) of `command` that can act under this policy."""
        return self._command_hooks[command]

    @functools.cached_property
    def hooked_commands(self) -> frozenset[str]:
        """The commands some command hook can act at under this policy."""
        return frozenset(c for c in COMMANDS if self._command_hooks[c])

    @functools.cached_property
    def _command_hooks(self) -> dict[str, tuple[CommandHook, ...]]:
        return {c: tuple(h for h in command_hooks(c) if h.wanted is None or h.wanted(self))
                for c in COMMANDS}

    @functools.cached_property
    def stage_acls(self) -> dict[Stage, Acl]:
        """Stage -> its ACL, for the stages the policy has (read at every stage of a message)."""
        return {stage: self.acls[stage.key] for stage in ORDERED if stage.key in self.acls}
