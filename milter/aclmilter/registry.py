"""The one table of conditions, modifiers, controls, variables and checks (Exim's conditions[]).

Everything else reads these tables: the policy loader validates names, stages and argument
syntax against them, `aclmilter policy show` documents them, and the engine dispatches
through them. Feature modules register their entries at import time with the decorators
below; a duplicate name fails at import, never silently overrides.
"""

from __future__ import annotations

import enum
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any, Callable

from .stages import ALL, Stage

if TYPE_CHECKING:  # pragma: no cover
    from .context import EvalContext
    from .outcome import Result


class Kind(enum.Enum):
    """What a statement item is."""

    CONDITION = "condition"
    MODIFIER = "modifier"


class ArgMode(enum.Enum):
    """How an item's argument is expanded before the item runs (Exim ACD_EXP and friends)."""

    EXPANDED = "expanded"  # expanded first; forced failure -> item skipped (counts as true)
    LIST = "list"          # a list; expanded by the list matcher; forced failure -> not in list
    DEFERRED = "deferred"  # message/log_message: kept, expanded only when the ACL decides
    RAW = "raw"            # taken literally (no expansion)


# A parser turns the (expanded) argument text into the value `run` receives; it raises
# errors.SyntaxProblem on bad syntax. It runs at load time when the text holds no `$`,
# otherwise at run time on the expanded text (a failure there is ERROR, like Exim).
ArgParser = Callable[[str], Any]
ItemRunner = Callable[["EvalContext", Any], "Result"]


def _text(value: str) -> str:
    return value


class _Record:
    """Base of the registry's entry types: immutable records with a dataclass's equality,
    hash and repr over the fields named in `__slots__`.

    Plain classes rather than frozen dataclasses because a dataclass writes and compiles its
    methods each time the module is imported (~0.7 ms a class, every command's start-up:
    issue 23); these methods are in the module's cached bytecode."""

    __slots__: tuple[str, ...] = ()

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__qualname__}({fields})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # copy/pickle rebuild through __init__ (every subclass takes its fields in slot order),
        # since setting a slot afterwards is refused like a frozen dataclass's field
        return (self.__class__, self._values())


class Item(_Record):
    """A condition or modifier usable as a statement key."""

    __slots__ = ("name", "kind", "stages", "run", "arg", "parse", "list_kind", "variables", "checks",
                 "doc", "requires_setting")
    name: str
    kind: Kind
    stages: Stage
    run: ItemRunner
    arg: ArgMode
    parse: ArgParser
    list_kind: str | None                 # for ArgMode.LIST: host/domain/address/localpart/string
    variables: tuple[str, ...]            # variables this item sets, for docs and `test --json`
    checks: tuple[str, ...]               # checks this item needs
    doc: str
    requires_setting: str | None          # a policy using it without this setting is refused at load

    def __init__(self, name: str, kind: Kind, stages: Stage, run: ItemRunner, arg: ArgMode = ArgMode.EXPANDED,
                 parse: ArgParser = _text, list_kind: str | None = None, variables: tuple[str, ...] = (),
                 checks: tuple[str, ...] = (), doc: str = "", requires_setting: str | None = None) -> None:
        self._set(name=name, kind=kind, stages=stages, run=run, arg=arg, parse=parse, list_kind=list_kind,
                  variables=variables, checks=checks, doc=doc, requires_setting=requires_setting)


class Control(_Record):
    """A `control = name[/options]` value."""

    __slots__ = ("name", "stages", "run", "aliases", "takes_options", "doc", "needs_content",
                 "requires_setting")
    name: str
    stages: Stage
    run: Callable[["EvalContext", str], None]   # receives the option text after the first '/'
    aliases: tuple[str, ...]
    takes_options: bool
    doc: str
    #: setting it makes end-of-message work read the message (e.g. bmi_run: a scan), so the
    #: MTA must send headers and body even without a data/deliver ACL (policy/needs.py)
    needs_content: bool
    #: a setting that must be non-empty for this control to work (checked at load)
    requires_setting: str | None

    def __init__(self, name: str, stages: Stage, run: Callable[["EvalContext", str], None],
                 aliases: tuple[str, ...] = (), takes_options: bool = False, doc: str = "",
                 needs_content: bool = False, requires_setting: str | None = None) -> None:
        self._set(name=name, stages=stages, run=run, aliases=aliases, takes_options=takes_options, doc=doc,
                  needs_content=needs_content, requires_setting=requires_setting)


class Variable(_Record):
    """An expansion variable `$name`. `get` returns None when the variable has no value yet."""

    __slots__ = ("name", "get", "stages", "doc")
    name: str
    get: Callable[["EvalContext"], str | None]
    stages: Stage
    doc: str

    def __init__(self, name: str, get: Callable[["EvalContext"], str | None], stages: Stage = ALL,
                 doc: str = "") -> None:
        self._set(name=name, get=get, stages=stages, doc=doc)


class Check(_Record):
    """A fact-finding mechanism (spf, dkim, dmarc, dcc, scan, ...), memoised per scope.

    `compute` returns a frozen typed result; it may raise LookupDefer only for failures that
    the spec says are DEFER; every temporary error that is a *result* (SPF temperror) is
    returned as a value. `needs` lists other checks whose results it reads.
    """

    __slots__ = ("name", "compute", "scope", "needs", "doc")
    name: str
    compute: Callable[..., Any]           # (ctx) -> result, or (ctx, key) for `ctx.check(name, key=)`
    scope: str                            # "connection" | "transaction" | "recipient"
    needs: tuple[str, ...]
    doc: str

    def __init__(self, name: str, compute: Callable[..., Any], scope: str = "transaction",
                 needs: tuple[str, ...] = (), doc: str = "") -> None:
        self._set(name=name, compute=compute, scope=scope, needs=needs, doc=doc)


class _Tables:
    """Every registry table by kind, each a dict by name in registration order."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.controls: dict[str, Control] = {}
        self.variables: dict[str, Variable] = {}
        self.checks: dict[str, Check] = {}
        self.settings: dict[str, Setting] = {}
        self.lookups: dict[str, Lookup] = {}
        self.eom_hooks: dict[str, EomHook] = {}
        self.slots: dict[str, Slot] = {}
        self.command_hooks: dict[str, CommandHook] = {}
        self.record_fields: dict[str, RecordField] = {}


class Setting(_Record):
    """A key of the policy's `settings:` mapping, with its validator (raises SyntaxProblem)."""

    __slots__ = ("name", "parse", "default", "doc")
    name: str
    parse: Callable[[Any], Any]
    default: Any
    doc: str

    def __init__(self, name: str, parse: Callable[[Any], Any], default: Any = None, doc: str = "") -> None:
        self._set(name=name, parse=parse, default=default, doc=doc)


TABLES = _Tables()


def _add(table: dict, name: str, entry: object) -> None:
    if name in table:
        raise RuntimeError(f"aclmilter registry: duplicate name {name!r}")
    table[name] = entry


def condition(name: str, stages: Stage, *, arg: ArgMode = ArgMode.EXPANDED, parse: ArgParser = _text,
              list_kind: str | None = None, variables: tuple[str, ...] = (), checks: tuple[str, ...] = (),
              requires_setting: str | None = None) -> Callable[[ItemRunner], ItemRunner]:
    """Register a condition; the decorated function returns Result.OK/FAIL/DEFER/ERROR.
    With `requires_setting`, a policy that uses it without that setting is refused at load."""
    def wrap(fn: ItemRunner) -> ItemRunner:
        _add(TABLES.items, name, Item(name, Kind.CONDITION, stages, fn, arg, parse, list_kind,
                                      variables, checks, (fn.__doc__ or "").strip(), requires_setting))
        return fn
    return wrap


def modifier(name: str, stages: Stage, *, arg: ArgMode = ArgMode.EXPANDED, parse: ArgParser = _text,
             variables: tuple[str, ...] = ()) -> Callable[[ItemRunner], ItemRunner]:
    """Register a modifier; the decorated function acts and returns Result.OK (or DEFER/ERROR)."""
    def wrap(fn: ItemRunner) -> ItemRunner:
        _add(TABLES.items, name, Item(name, Kind.MODIFIER, stages, fn, arg, parse, None, variables,
                                      (), (fn.__doc__ or "").strip()))
        return fn
    return wrap


def control(name: str, stages: Stage, *, aliases: tuple[str, ...] = (), takes_options: bool = False,
            needs_content: bool = False, requires_setting: str | None = None,
            ) -> Callable[[Callable[["EvalContext", str], None]], Callable[["EvalContext", str], None]]:
    """Register a `control =` value (and its aliases)."""
    def wrap(fn: Callable[["EvalContext", str], None]) -> Callable[["EvalContext", str], None]:
        entry = Control(name, stages, fn, aliases, takes_options, (fn.__doc__ or "").strip(), needs_content,
                        requires_setting)
        for n in (name, *aliases):
            _add(TABLES.controls, n, entry)
        return fn
    return wrap


def variable(name: str, stages: Stage = ALL, doc: str = "",
             ) -> Callable[[Callable[["EvalContext"], str | None]], Callable[["EvalContext"], str | None]]:
    """Register an expansion variable."""
    def wrap(fn: Callable[["EvalContext"], str | None]) -> Callable[["EvalContext"], str | None]:
        _add(TABLES.variables, name, Variable(name, fn, stages, doc or (fn.__doc__ or "").strip()))
        return fn
    return wrap


def add_variable(name: str, get: Callable[["EvalContext"], str | None], doc: str = "") -> None:
    """Register a variable from a plain function (for tables of similar variables)."""
    _add(TABLES.variables, name, Variable(name, get, ALL, doc))


def check(name: str, *, scope: str = "transaction", needs: tuple[str, ...] = ()
          ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a check (memoised fact finder): `fn(ctx)`, or `fn(ctx, key)` for a check read
    with `ctx.check(name, key=...)` (memoised per key)."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        _add(TABLES.checks, name, Check(name, fn, scope, needs, (fn.__doc__ or "").strip()))
        return fn
    return wrap


def setting(name: str, parse: Callable[[Any], Any], default: Any = None, doc: str = "") -> None:
    """Register a `settings:` key with its validator and default."""
    _add(TABLES.settings, name, Setting(name, parse, default, doc))


class Lookup(_Record):
    """A lookup type for `${lookup}` and list items (`lsearch;/file`, `redis{...}`).

    Single-key types get (key, file); query-style types get (None, query). `find` returns the
    value or None for "not found", and raises errors.LookupDefer when it cannot answer now.
    """

    __slots__ = ("name", "query_style", "find", "quote", "doc")
    name: str
    query_style: bool
    find: Callable[["EvalContext", str | None, str], str | None]
    quote: Callable[[str], str] | None          # ${quote_<name>:...}
    doc: str

    def __init__(self, name: str, query_style: bool, find: Callable[["EvalContext", str | None, str], str | None],
                 quote: Callable[[str], str] | None = None, doc: str = "") -> None:
        self._set(name=name, query_style=query_style, find=find, quote=quote, doc=doc)


def lookup(name: str, *, query_style: bool, quote: Callable[[str], str] | None = None
           ) -> Callable[[Callable], Callable]:
    """Register a lookup type."""
    def wrap(fn: Callable) -> Callable:
        _add(TABLES.lookups, name, Lookup(name, query_style, fn, quote, (fn.__doc__ or "").strip()))
        return fn
    return wrap


class EomHook(_Record):
    """Work done at end of message outside any ACL, in a fixed order.

    phase "after_data": after the DATA ACL decided, before the DELIVER stage (forged
    Authentication-Results removal, our A-R header, DMARC history, X-DCC header).
    phase "after_deliver": after every recipient's DELIVER outcome is known (verdict headers).
    `run(ctx, decision)` queues edits on ctx.txn.edits; it must not raise for expected
    failures (log them); an unexpected exception is treated as an internal error.
    """

    __slots__ = ("name", "phase", "order", "run", "wanted")
    name: str
    phase: str
    order: int
    run: Callable[["EvalContext", Any], None]
    #: False when the hook can never act under a policy (policy.model.Policy); None: always run
    wanted: Callable[[Any], bool] | None

    def __init__(self, name: str, phase: str, order: int, run: Callable[["EvalContext", Any], None],
                 wanted: Callable[[Any], bool] | None = None) -> None:
        self._set(name=name, phase=phase, order=order, run=run, wanted=wanted)


def eom_hook(name: str, *, phase: str = "after_data", order: int = 50,
             wanted: Callable[[Any], bool] | None = None) -> Callable[[Callable], Callable]:
    """Register an end-of-message hook (lower `order` runs first).

    `wanted(policy)` tells, once per loaded policy, whether the hook can act at all under it
    (e.g. a setting it needs is set); a hook that cannot is not called for any message.
    """
    if phase not in ("after_data", "after_deliver"):
        raise RuntimeError(f"unknown eom hook phase {phase!r}")

    def wrap(fn: Callable) -> Callable:
        _add(TABLES.eom_hooks, name, EomHook(name, phase, order, fn, wanted))
        return fn
    return wrap


_HOOKS_BY_PHASE: dict[str, tuple[int, tuple[EomHook, ...]]] = {}


def hooks(phase: str) -> tuple[EomHook, ...]:
    """Return the hooks of one phase in execution order (sorted once per registration change)."""
    count = len(TABLES.eom_hooks)
    cached = _HOOKS_BY_PHASE.get(phase)
    if cached is None or cached[0] != count:
        ordered = tuple(sorted((h for h in TABLES.eom_hooks.values() if h.phase == phase),
                               key=lambda h: (h.order, h.name)))
        cached = _HOOKS_BY_PHASE[phase] = (count, ordered)
    return cached[1]


# ---- feature state ---------------------------------------------------------------------------
#: Where a slot's value lives: the Connection, the Transaction, the Recipient (state.py), or
#: the one command being evaluated (an EvalContext and its nested `acl =` children).
SLOT_SCOPES = ("connection", "transaction", "recipient", "command")


class Slot(_Record):
    """State one feature keeps per scope, declared by that feature (state.py knows none).

    The value is made by `factory()` on first use in each scope instance, so it is fresh for
    every connection / message / recipient / command, and dropped with it.
    """

    __slots__ = ("name", "scope", "factory")
    name: str
    scope: str
    factory: Callable[[], Any]

    def __init__(self, name: str, scope: str, factory: Callable[[], Any]) -> None:
        self._set(name=name, scope=scope, factory=factory)

    def on(self, holder: Any) -> Any:
        """The value in `holder` (a Connection, Transaction or Recipient, or a command's
        dict), created on first use."""
        slots = holder if isinstance(holder, dict) else holder.slots
        try:
            return slots[self.name]
        except KeyError:
            value = slots[self.name] = self.factory()
            return value

    def peek(self, holder: Any) -> Any:
        """The value in `holder` if one was made, else None (reading never creates one)."""
        if holder is None:
            return None
        slots = holder if isinstance(holder, dict) else holder.slots
        return slots.get(self.name)

    def put(self, holder: Any, value: Any) -> None:
        """Replace the value in `holder` (for slots holding an immutable value)."""
        slots = holder if isinstance(holder, dict) else holder.slots
        slots[self.name] = value

    def of(self, ctx: "EvalContext") -> Any:
        """The value for the scope `ctx` is in. Raises ExpansionFailed outside that scope
        (a recipient slot outside a recipient stage, a transaction slot before MAIL)."""
        return self.on(ctx.slot_holder(self.scope))


def slot(name: str, *, scope: str, factory: Callable[[], Any]) -> Slot:
    """Declare a feature's per-scope state; returns the handle the feature reads it with."""
    if scope not in SLOT_SCOPES:
        raise RuntimeError(f"aclmilter registry: slot {name!r}: unknown scope {scope!r}")
    entry = Slot(name, scope, factory)
    _add(TABLES.slots, name, entry)
    return entry


# ---- command hooks -----------------------------------------------------------------------------
#: The commands a hook can run before: the stage's ACL (or, for "data", the end of message).
COMMANDS = ("connect", "helo", "mail", "rcpt", "predata", "data")


class CommandHook(_Record):
    """Feature work the session does at a command before that command's ACL runs.

    `run(ctx)` returns None to go on, or a Reply: the command is refused with it (a 5xx
    reject; `name` is logged as where the refusal came from). It must not raise for expected
    failures; an exception is an internal error of that command. At "rcpt" it runs before
    the recipient is added to the message.
    """

    __slots__ = ("name", "commands", "order", "run", "wanted")
    name: str
    commands: tuple[str, ...]
    order: int
    run: Callable[["EvalContext"], Any]
    #: False when the hook can never act under a policy (policy.model.Policy); None: always
    wanted: Callable[[Any], bool] | None

    def __init__(self, name: str, commands: tuple[str, ...], order: int, run: Callable[["EvalContext"], Any],
                 wanted: Callable[[Any], bool] | None = None) -> None:
        self._set(name=name, commands=commands, order=order, run=run, wanted=wanted)


def command_hook(name: str, *, commands: tuple[str, ...], order: int = 50,
                 wanted: Callable[[Any], bool] | None = None) -> Callable[[Callable], Callable]:
    """Register a hook run before the ACL of each command in `commands` (lower order first)."""
    bad = [c for c in commands if c not in COMMANDS]
    if bad:
        raise RuntimeError(f"aclmilter registry: command hook {name!r}: unknown command(s) {bad}")

    def wrap(fn: Callable) -> Callable:
        _add(TABLES.command_hooks, name, CommandHook(name, tuple(commands), order, fn, wanted))
        return fn
    return wrap


def command_hooks(command: str) -> tuple[CommandHook, ...]:
    """The hooks of one command in execution order."""
    return tuple(sorted((h for h in TABLES.command_hooks.values() if command in h.commands),
                        key=lambda h: (h.order, h.name)))


# ---- message log record fields ---------------------------------------------------------------
class RecordField(_Record):
    """A field a feature adds to the one-line-per-message record (msglog.message_record):
    `get(conn)` returns its text ("" when the feature has nothing to say)."""

    __slots__ = ("name", "get")
    name: str
    get: Callable[[Any], str]

    def __init__(self, name: str, get: Callable[[Any], str]) -> None:
        self._set(name=name, get=get)


def record_field(name: str) -> Callable[[Callable[[Any], str]], Callable[[Any], str]]:
    """Register a message record field computed from the Connection."""
    def wrap(fn: Callable[[Any], str]) -> Callable[[Any], str]:
        _add(TABLES.record_fields, name, RecordField(name, fn))
        return fn
    return wrap
