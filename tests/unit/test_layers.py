"""Imports run one way: every import inside `aclmilter` goes to a lower layer.

The layer table below is the one place the architecture's layering is written down
(docs/dev/architecture.md describes it). The test reads every module with `ast` and looks at
*every* import statement - module level, bottom-of-module and inside functions alike, because
a late import is still a dependency. Imports under `if TYPE_CHECKING:` are exempt: they never
run, and annotations may name a type from any layer (a lower layer may name the context it is
called with). A module may import modules of its own unit (its package, or itself) and of any
unit in a lower layer; anything else - an import of a higher layer or of a sibling unit in the
same layer - fails with the file and line. A second test fails on any import cycle between
modules, inside a unit too, except inside the two recursive evaluators named in
RECURSIVE_UNITS (the expansion evaluator calls its operators and conditions, which evaluate
their arguments; a list kind matches nested lists): there the cycle is the grammar's, and the
late imports that close it sit at the bottom of the module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "milter"
PACKAGE = ROOT / "aclmilter"

# Top first. A unit is a top-level module or sub-package of `aclmilter` ("" is the package's
# own __init__, i.e. `__version__`). Units in one layer may not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("docgen",),                 # renders docs from the registry and the CLI's parser
    ("cli",),                    # the command line: every command below
    ("bh", "eximimport", "regdoc"),  # `aclmilter bh`; Exim-config translation; `policy show`
    ("service",),                # pymilter glue, workers, logging, metrics
    ("dryrun",),                 # `aclmilter test`: drives sessions without an MTA
    ("session",),                # one SMTP connection as a sans-I/O state machine
    ("eom",),                    # the session's end of message with the deliver stage
    ("monitor", "internal", "msglog"),  # monitor mode; internal-error policy; the log record
    ("summary", "replies"),      # the session's log words; internal-error replies
    ("runtime",),                # current (policy, services) snapshot and reloads
    ("engine",),                 # Exim ACL semantics over one ACL
    ("policy",),                 # YAML loading, model, needs analysis (validated against the
                                 # registry: the loader imports the feature modules that fill it)
    ("conditions",),             # feature registrations: conditions, modifiers, variables
    ("checks", "events"),        # mechanisms (SPF, DKIM, DMARC, ...); event_action
    ("early",),                  # which DNS lookups to start before their step (needs -> names)
    ("clients",),                # protocol codecs and transports (DNS, Redis, dccifd, scanners)
    ("lists",),                  # Exim address/domain/host lists
    ("expand",),                 # the ${...} expansion language
    ("hostname",),               # this host's name (a service plus a reader)
    ("context",),                # EvalContext handed to every registered function
    ("registry",),               # the one table of conditions, modifiers, checks, ...
    ("identity",),               # the client's identity as the MTA reports it
    ("state",),                  # connection/transaction/recipient data
    ("services",),               # lazily built shared services
    ("responses",),              # decision -> milter response mapping
    ("actions",),                # replies, decisions, queued edits
    ("validators", "plugs"),     # settings validators; upward calls plugged in from above
    ("outcome", "stages", "errors", "mode", "lazy", ""),
]

RECURSIVE_UNITS = frozenset({"expand", "lists"})

RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers of statements under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    for sub in ast.walk(stmt):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def _resolve(modules: set[str], name: str) -> str:
    """The longest known module that `name` is or lies in (a.b.C -> a.b)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports() -> list[tuple[str, str, str]]:
    """(importing module, imported module, 'file:line') for every runtime import."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    found = []
    for path in paths:
        mod = module_name(path)
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skip:
                continue
            where = f"{path.relative_to(ROOT.parent)}:{node.lineno}"
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from . import x` names a module when x is one, else an attribute of stem
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem
                           for a in node.names]
            for target in targets:
                if target == "aclmilter" or target.startswith("aclmilter."):
                    found.append((mod, _resolve(modules, target), where))
    return found


def test_every_unit_has_a_layer():
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    missing = sorted(units - set(RANK))
    assert not missing, f"place these modules in LAYERS of {__file__}: {missing}"
    assert not set(RANK) - units, f"LAYERS names units that do not exist: {set(RANK) - units}"


def test_imports_run_downward():
    wrong = []
    for src, dst, where in imports():
        s, d = unit_of(src), unit_of(dst)
        if s == d:
            continue
        if RANK[d] <= RANK[s]:
            kind = "sideways" if RANK[d] == RANK[s] else "upward"
            wrong.append(f"{where}: {src} imports {dst} ({kind}: {s or 'aclmilter'} -> {d or 'aclmilter'})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for src, dst, _ in imports():
        if unit_of(src) == unit_of(dst) and unit_of(src) in RECURSIVE_UNITS:
            continue
        if src != dst and not src.startswith(dst + "."):
            # a package's submodule importing its own package __init__ is how Python loads it
            graph.setdefault(src, set()).add(dst)
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("src,dst,ok", [
    ("aclmilter.engine", "aclmilter.conditions.core", True),
    ("aclmilter.clients.spamd", "aclmilter.checks.scan", False),
    ("aclmilter.expand.lookup", "aclmilter.lists.spec", False),
])
def test_the_table_orders_the_documented_stack(src, dst, ok):
    assert (RANK[unit_of(dst)] > RANK[unit_of(src)]) is ok


def test_upward_calls_are_plugged_in_by_their_providers():
    """Every plug in plugs.py is filled once its provider is imported, so an `acl =`,
    `${acl}` or list match from a lower layer reaches the engine or lists/."""
    import importlib

    from aclmilter import plugs
    slots = [v for v in vars(plugs).values() if isinstance(v, plugs.Plug)]
    assert {p.name for p in slots} == {"run_named_acl", "run_nested_acl", "match_list", "split_list"}
    for p in slots:
        importlib.import_module(p.provider)
        assert p.fn is not None, f"{p.provider} did not fill plug {p.name}"
    assert plugs.split_list("<; a;b ; c") == ["a", "b", "c"]


def test_an_empty_plug_names_its_provider():
    from aclmilter.plugs import Plug
    plug: Plug[[], str] = Plug("example", "aclmilter.example")
    with pytest.raises(RuntimeError, match="import aclmilter.example"):
        plug()
    plug.plug(lambda: "x")
    assert plug() == "x"
    with pytest.raises(RuntimeError, match="already filled"):
        plug.plug(lambda: "y")
