"""The evaluation context: what conditions, variables and expansions see while an ACL runs."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ExpansionFailed
from .mode import Mode
from .registry import TABLES
from .stages import Stage
from .state import Connection, Recipient, Transaction

if TYPE_CHECKING:  # pragma: no cover
    from .policy.model import Policy
    from .services import Services

_ACL_VAR = re.compile(r"^acl_[cm](?:\d|_)[A-Za-z0-9_]*\Z")
_NUMERIC = re.compile(r"^\d\Z")


def is_acl_variable(name: str) -> bool:
    """True for Exim ACL variable names: acl_c/acl_m + digit or underscore + [A-Za-z0-9_]*."""
    return bool(_ACL_VAR.match(name))


def is_known_variable(name: str) -> bool:
    """True if `$name` can be expanded (checked at load time so no live message finds the typo)."""
    return (name in TABLES.variables or is_acl_variable(name) or bool(_NUMERIC.match(name))
            or name in ("value", "acl_narg") or bool(re.fullmatch(r"acl_arg[1-9]", name)))


@dataclass
class TraceEntry:
    """One line of the decision trace: a statement, a condition result, or a note."""

    where: str
    what: str
    result: str = ""

    def as_dict(self) -> dict:
        return {"where": self.where, "what": self.what, "result": self.result}


@dataclass
class EvalContext:
    """Everything one ACL evaluation can read or change."""

    conn: Connection
    txn: Transaction | None
    stage: Stage
    services: "Services"
    policy: "Policy"
    rcpt: Recipient | None = None
    trace: list[TraceEntry] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)    # warn/logwrite lines for the service log
    locals: dict[str, str] = field(default_factory=dict)  # $value, $1.., $acl_arg*, $host_data, ...
    depth: int = 0                                         # nested `acl =` depth
    smtp_command: str = ""
    cond_message: str | None = None     # text produced by a condition (nested acl), used if no `message`
    #: how the session runs (mode.Mode: simulate, writes, trace); tests trace by default
    mode: Mode = Mode(trace=True)
    #: only read results already computed: `check()` of one that has not run fails instead of
    #: computing it (how a simulation shows every variable without running unused checks)
    observe_only: bool = False
    #: command-scope slots (registry.slot(scope="command")): one dict per command, shared by
    #: nested `acl =` evaluations of that command; made on first use (most commands need none)
    command_slots: dict[str, Any] | None = None

    # ---- variables -------------------------------------------------------------------------
    def var(self, name: str) -> str:
        """Return `$name`; raise ExpansionFailed for an unknown name (Exim: expansion fails)."""
        if name in self.locals:
            return self.locals[name]
        if name.startswith("acl_c"):
            if is_acl_variable(name):
                return self.conn.acl_c.get(name, "")
        elif name.startswith("acl_m"):
            if is_acl_variable(name):
                return self.txn.acl_m.get(name, "") if self.txn else ""
        entry = TABLES.variables.get(name)
        if entry is None:
            if is_known_variable(name):
                return ""
            raise ExpansionFailed(f"unknown variable name \"{name}\"")
        value = entry.get(self)
        return "" if value is None else str(value)

    def set_var(self, name: str, value: str) -> None:
        """Set an `acl_c*` (connection) or `acl_m*` (message) variable."""
        if not is_acl_variable(name):
            raise ExpansionFailed(f"cannot set variable {name!r}")
        if name.startswith("acl_c"):
            self.conn.acl_c[name] = value
        elif self.txn is not None:
            self.txn.acl_m[name] = value

    # ---- checks ----------------------------------------------------------------------------
    def check(self, name: str, key: Any = None) -> Any:
        """Return the memoised result of check `name`, computing it (and its needs) once per scope.

        With `key` (hashable) the check is memoised once per key in its scope and its compute
        function is called as `compute(ctx, key)` (e.g. one DNS list lookup per list and
        address). Exceptions (LookupDefer and others) are not memoised: a later condition may
        retry.
        """
        entry = TABLES.checks[name]
        store = self._store(entry.scope)
        slot = name if key is None else (name, key)
        if slot in store:
            return store[slot]
        if self.observe_only:
            raise ExpansionFailed(f"check {name} has not run")
        for dep in entry.needs:
            self.check(dep)
        metrics = self.services.metrics
        if metrics is None:
            result = entry.compute(self) if key is None else entry.compute(self, key)
        else:       # the latency of the check itself, once per computation (not per condition)
            started = time.monotonic()
            try:
                result = entry.compute(self) if key is None else entry.compute(self, key)
            finally:
                metrics.check_latency(name, time.monotonic() - started)
        store[slot] = result
        return result

    def has_result(self, name: str) -> bool:
        """True if check `name` already ran in its scope (variables read results without running)."""
        entry = TABLES.checks.get(name)
        return entry is not None and name in self._store(entry.scope)

    def result(self, name: str) -> Any:
        """Return the stored result of check `name`, or None if it has not run."""
        entry = TABLES.checks.get(name)
        if entry is None:
            return None
        return self._store(entry.scope).get(name)

    def slot_holder(self, scope: str) -> Any:
        """Where `scope`'s feature slots live now (registry.Slot.of); ExpansionFailed when the
        evaluation is outside that scope."""
        if scope == "command":
            if self.command_slots is None:
                self.command_slots = {}
            return self.command_slots
        if scope == "connection":
            return self.conn
        if scope == "recipient":
            if self.rcpt is None:
                raise ExpansionFailed("recipient-scope state outside a recipient stage")
            return self.rcpt
        if self.txn is None:
            raise ExpansionFailed("message state outside a message")
        return self.txn

    def _store(self, scope: str) -> dict:
        if scope == "connection":
            return self.conn.results
        if scope == "recipient":
            if self.rcpt is None:
                raise ExpansionFailed("recipient-scope check outside a recipient stage")
            return self.rcpt.results
        if self.txn is None:
            raise ExpansionFailed("message check outside a message")
        return self.txn.results

    # ---- misc ------------------------------------------------------------------------------
    def note(self, where: str, what: str, result: str = "") -> None:
        if self.mode.trace:
            self.trace.append(TraceEntry(where, what, result))

    def setting(self, name: str) -> Any:
        """Return a policy setting (already validated and defaulted by the loader)."""
        return self.policy.settings.get(name)

    def child(self) -> "EvalContext":
        """A context for a nested `acl =` evaluation sharing state, trace and command slots."""
        if self.command_slots is None:
            self.command_slots = {}
        return EvalContext(self.conn, self.txn, self.stage, self.services, self.policy, self.rcpt,
                           self.trace, self.log_lines, dict(self.locals), self.depth + 1,
                           self.smtp_command, None, self.mode, self.observe_only, self.command_slots)
