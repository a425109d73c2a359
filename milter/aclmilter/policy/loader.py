"""Load a YAML policy into the frozen model, validating everything against the registry.

Every mistake is collected and reported as `file:line:column: message`; a policy with any
error is refused as a whole. Nothing is discovered later from a live message: names, stage
permissions, argument syntax (lists, expansions, ratelimit, ...) and named-list references
are all checked here.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from .. import conditions  # noqa: F401  (registers every feature)
from .. import expand, lists
from ..expand import aclcall
from ..errors import Mark, PolicyError, PolicyErrors, SyntaxProblem
from ..outcome import Verb
from ..registry import TABLES, ArgMode, Item, Kind
from ..stages import ORDERED, Stage
from . import header_guard
from .model import Acl, ItemUse, Policy, Statement
from .yamlnodes import compose, mapping_items, mark_of, scalar_text, to_python, value_mark

LIST_SECTIONS = {"hostlist": "host", "domainlist": "domain", "addresslist": "address",
                 "localpartlist": "localpart"}
TOP_KEYS = ("settings", *LIST_SECTIONS, "acl")
VERBS = {v.value: v for v in Verb}
#: Items the engine handles itself (message texts and the endpass marker).
ENDPASS_VERBS = (Verb.ACCEPT, Verb.DISCARD)


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Loader:
    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.errors: list[PolicyError] = []
        self.settings: dict[str, Any] = {}
        self.lists: dict[str, dict[str, Any]] = {k: {} for k in LIST_SECTIONS.values()}
        self.acl_nodes: list[tuple[str, yaml.Node, yaml.Node]] = []
        self.acls: dict[str, Acl] = {}
        self.acl_refs: dict[str, set[str]] = {}   # acl name -> names of ACLs it references
        self._list_uses: list[tuple[ItemUse, str]] = []
        self.where = Mark(file, 1, 1)    # the last position reached, for an unforeseen failure

    def err(self, mark: Mark, message: str) -> None:
        self.errors.append(PolicyError(mark, message))

    # ---- top level ------------------------------------------------------------------------
    def load(self) -> Policy:
        try:
            root = compose(self.text, self.file)
        except PolicyError as exc:
            raise PolicyErrors([exc]) from None
        if root is None:
            root = yaml.MappingNode("tag:yaml.org,2002:map", [])
        if not isinstance(root, yaml.MappingNode):
            raise PolicyErrors([PolicyError(mark_of(root, self.file), "a policy is a mapping with keys "
                                            + ", ".join(TOP_KEYS))])
        sections = {}
        for key, knode, vnode in mapping_items(root, self.file, self.errors):
            if key not in TOP_KEYS:
                self.err(mark_of(knode, self.file),
                         f"unknown top-level key {key!r}{_suggest(key, list(TOP_KEYS))}")
                continue
            sections[key] = vnode
        self.load_settings(sections.get("settings"))
        for section, kind in LIST_SECTIONS.items():
            if section in sections:
                self.load_lists(sections[section], kind)
        if "acl" in sections:
            self.load_acls(sections["acl"])
        self.validate_list_refs()
        self.check_named_acl_stages()
        self.check_header_texts()
        if self.errors:
            raise PolicyErrors(self.errors)
        return Policy(self.file, self.settings, self.lists, self.acls, self.text)

    # ---- settings ---------------------------------------------------------------------------
    def load_settings(self, node: yaml.Node | None) -> None:
        given: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        if node is not None and not (isinstance(node, yaml.ScalarNode) and scalar_text(node) == ""):
            if not isinstance(node, yaml.MappingNode):
                self.err(mark_of(node, self.file), "settings must be a mapping")
            else:
                for key, knode, vnode in mapping_items(node, self.file, self.errors):
                    if key not in TABLES.settings:
                        self.err(mark_of(knode, self.file),
                                 f"unknown setting {key!r}{_suggest(key, list(TABLES.settings))}")
                        continue
                    given[key] = (knode, vnode)
        for name, setting in TABLES.settings.items():
            if name in given:
                vnode = given[name][1]
                self.where = mark_of(vnode, self.file)
                try:
                    self.settings[name] = setting.parse(to_python(vnode, self.file))
                except PolicyError as exc:
                    self.err(exc.mark, f"settings.{name}: {exc.message}")
                except SyntaxProblem as exc:
                    self.err(value_mark(vnode, self.file, exc.offset), f"settings.{name}: {exc}")
                except (TypeError, ValueError) as exc:
                    self.err(mark_of(vnode, self.file), f"settings.{name}: {exc}")
            else:
                self.settings[name] = setting.default

    # ---- named lists ------------------------------------------------------------------------
    def load_lists(self, node: yaml.Node, kind: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            self.err(mark_of(node, self.file), f"{kind}list must be a mapping of name: list")
            return
        for name, knode, vnode in mapping_items(node, self.file, self.errors):
            if not name.replace("_", "").isalnum():
                self.err(mark_of(knode, self.file), f"list name {name!r} may hold only letters, digits and _")
                continue
            text = self.list_text(vnode)
            if text is None:
                continue
            try:
                self.lists[kind][name] = (lists.parse_list(text, kind), vnode)
            except SyntaxProblem as exc:
                self.err(value_mark(vnode, self.file, exc.offset), f"{kind}list {name}: {exc}")

    def list_text(self, vnode: yaml.Node) -> str | None:
        """A list given as a string or a YAML sequence of strings, as one list text."""
        if isinstance(vnode, yaml.SequenceNode):
            items = []
            for child in vnode.value:
                t = scalar_text(child)
                if t is None:
                    self.err(mark_of(child, self.file), "list items must be strings")
                    return None
                items.append(t)
            return lists.join_items(items)
        t = scalar_text(vnode)
        if t is None:
            self.err(mark_of(vnode, self.file), "a list is a string or a sequence of strings")
        return t

    def validate_list_refs(self) -> None:
        named = {kind: set(entries) for kind, entries in self.lists.items()}
        for kind, entries in self.lists.items():
            for name, (spec, vnode) in list(entries.items()):
                for problem in lists.validate(spec, named, kind):
                    self.err(value_mark(vnode, self.file, problem.offset), f"{kind}list {name}: {problem}")
                entries[name] = spec
        for use, kind in self._list_uses:
            for problem in lists.validate(use.expansion, named, kind):
                self.err(use.mark.shifted(problem.offset), f"{use.name}: {problem}")

    # ---- ACLs -------------------------------------------------------------------------------
    def load_acls(self, node: yaml.Node) -> None:
        if not isinstance(node, yaml.MappingNode):
            self.err(mark_of(node, self.file), "acl must be a mapping of stage or ACL name to statements")
            return
        entries = mapping_items(node, self.file, self.errors)
        names = {key for key, _, _ in entries}
        self.acl_names = names
        for key, knode, vnode in entries:
            stage = None
            try:
                stage = Stage.from_key(key)
            except KeyError:
                if not key.replace("_", "").isalnum():
                    self.err(mark_of(knode, self.file), f"ACL name {key!r} may hold only letters, digits and _")
                    continue
            self.acls[key] = self.load_acl(key, stage, knode, vnode)

    def load_acl(self, name: str, stage: Stage | None, knode: yaml.Node, vnode: yaml.Node) -> Acl:
        statements: list[Statement] = []
        if isinstance(vnode, yaml.ScalarNode) and scalar_text(vnode) == "":
            return Acl(name, (), mark_of(knode, self.file))
        if not isinstance(vnode, yaml.SequenceNode):
            self.err(mark_of(vnode, self.file), f"acl {name}: a list of statements is expected")
            return Acl(name, (), mark_of(knode, self.file))
        self.acl_refs.setdefault(name, set())
        for snode in vnode.value:
            st = self.load_statement(name, stage, snode)
            if st is not None:
                statements.append(st)
        return Acl(name, tuple(statements), mark_of(knode, self.file))

    def load_statement(self, acl: str, stage: Stage | None, snode: yaml.Node) -> Statement | None:
        mark = self.where = mark_of(snode, self.file)
        if isinstance(snode, yaml.ScalarNode):
            verb_text, body = snode.value, None
        elif isinstance(snode, yaml.MappingNode) and len(snode.value) == 1:
            knode, body = snode.value[0]
            verb_text = scalar_text(knode) or ""
        else:
            self.err(mark, "a statement is a verb, or a one-key mapping `verb: conditions`")
            return None
        verb = VERBS.get(verb_text)
        if verb is None:
            hint = " (verbs cannot be negated)" if verb_text.startswith("!") else _suggest(verb_text, list(VERBS))
            self.err(mark, f"unknown verb {verb_text!r}{hint}; verbs are " + ", ".join(VERBS))
            return None
        pairs: list[tuple[str, yaml.Node, yaml.Node]] = []
        if body is None or (isinstance(body, yaml.ScalarNode) and scalar_text(body) == ""):
            pass
        elif isinstance(body, yaml.MappingNode):
            pairs = mapping_items(body, self.file, self.errors)
        elif isinstance(body, yaml.SequenceNode):
            for child in body.value:
                if isinstance(child, yaml.MappingNode) and len(child.value) == 1:
                    k, v = child.value[0]
                    if not isinstance(k, yaml.ScalarNode):
                        self.err(mark_of(k, self.file), "a key must be a plain string")
                        continue
                    pairs.append((k.value, k, v))
                elif isinstance(child, yaml.ScalarNode) and child.value == "endpass":
                    pairs.append(("endpass", child, yaml.ScalarNode("tag:yaml.org,2002:null", "",
                                                                    child.start_mark, child.end_mark)))
                else:
                    self.err(mark_of(child, self.file), "each list entry of a statement is a one-key mapping")
        else:
            self.err(mark_of(body, self.file), "statement body must be a mapping or a list of one-key mappings")
        items: list[ItemUse] = []
        for key, knode, vnode in pairs:
            for use in self.load_items(acl, stage, verb, key, knode, vnode):
                items.append(use)
        return Statement(verb, tuple(items), mark)

    def load_items(self, acl: str, stage: Stage | None, verb: Verb, key: str, knode: yaml.Node,
                   vnode: yaml.Node) -> list[ItemUse]:
        kmark = self.where = mark_of(knode, self.file)
        negated = key.startswith("!")
        name = key[1:].strip() if negated else key
        entry = TABLES.items.get(name)
        if entry is None:
            self.err(kmark, f"unknown condition or modifier {name!r}{_suggest(name, list(TABLES.items))}")
            return []
        if negated and entry.kind is Kind.MODIFIER:
            self.err(kmark, f"modifier {name!r} cannot be negated (only conditions take a leading !)")
            return []
        if name == "endpass" and verb not in ENDPASS_VERBS:
            self.err(kmark, "endpass is allowed only with accept or discard")
            return []
        if stage is not None and not entry.stages & stage:
            self.err(kmark, f"{entry.kind.value} {name!r} is not allowed in the {stage.key} ACL "
                            f"(allowed in: {', '.join(s.key for s in ORDERED if s & entry.stages)})")
            return []
        if name == "set" and isinstance(vnode, yaml.MappingNode):
            uses = []
            for var, vk, vv in mapping_items(vnode, self.file, self.errors):
                text = scalar_text(vv)
                if text is None:
                    self.err(mark_of(vv, self.file), "set: the value must be a string")
                    continue
                use = self.make_use(entry, False, f"{var} = {text}", mark_of(vk, self.file), vv, stage,
                                    value_offset=-len(var) - 3)
                if use:
                    uses.append(use)
            return uses
        if entry.arg is ArgMode.LIST:
            text = self.list_text(vnode)
        else:
            text = scalar_text(vnode)
            if text is None:
                self.err(mark_of(vnode, self.file), f"{name}: the value must be a string")
                return []
        if text is None:
            return []
        use = self.make_use(entry, negated, text, kmark, vnode, stage)
        return [use] if use else []

    def make_use(self, entry: Item, negated: bool, text: str, kmark: Mark, vnode: yaml.Node,
                 stage: Stage | None, value_offset: int = 0) -> ItemUse | None:
        def vmark(offset: int) -> Mark:
            return value_mark(vnode, self.file, max(0, offset + value_offset))
        expansion: Any = None
        static: Any = None
        has_static = False
        try:
            if entry.arg is ArgMode.LIST:
                expansion = lists.parse_list(text, entry.list_kind or "string")
            elif entry.arg in (ArgMode.EXPANDED, ArgMode.DEFERRED):
                expansion = expand.parse(text)
                if entry.arg is ArgMode.EXPANDED and expansion.is_static:
                    static = entry.parse(expansion.literal)
                    has_static = True
            else:
                static = entry.parse(text)
                has_static = True
        except SyntaxProblem as exc:
            self.err(vmark(exc.offset), f"{entry.name}: {exc}")
            return None
        use = ItemUse(entry, negated, text, vmark(0), expansion, static, has_static)
        if entry.arg is ArgMode.LIST:
            self._list_uses.append((use, entry.list_kind or "string"))
        if entry.requires_setting and not self.settings.get(entry.requires_setting):
            self.err(use.mark, f"{entry.name} needs settings.{entry.requires_setting}")
        if entry.name == "control" and has_static:
            self.check_control(use, stage)
        if entry.name == "acl" and has_static:
            target = static[0]
            if target not in getattr(self, "acl_names", set()):
                self.err(use.mark, f"acl: no ACL named {target!r} under acl:")
        for target in aclcall.static_targets(expansion) if isinstance(expansion, expand.Expansion) else ():
            if target not in getattr(self, "acl_names", set()):
                self.err(use.mark, f"{entry.name}: ${{acl{{{target}}}}}: no ACL named {target!r} under acl:")
        return use

    def check_control(self, use: ItemUse, stage: Stage | None) -> None:
        name = use.static[0]
        ctl = TABLES.controls.get(name)
        if ctl is None:
            self.err(use.mark, f"control: unknown control {name!r}{_suggest(name, list(TABLES.controls))}")
        elif stage is not None and not ctl.stages & stage:
            self.err(use.mark, f"control {name!r} is not allowed in the {stage.key} ACL")
        elif use.static[1] and not ctl.takes_options:
            self.err(use.mark, f"control {name!r} takes no options")
        elif ctl.requires_setting and not self.settings.get(ctl.requires_setting):
            self.err(use.mark, f"control {name!r} needs settings.{ctl.requires_setting}")

    def check_header_texts(self) -> None:
        """Refuse add_header texts that duplicate a header the service writes (header_guard)."""
        for acl in self.acls.values():
            for st in acl.statements:
                for use in st.items:
                    if use.name == "add_header" or (use.name == "message" and st.verb is Verb.WARN):
                        for offset, message in header_guard.problems(use.text, self.settings):
                            self.err(use.mark.shifted(offset), message)

    def check_named_acl_stages(self) -> None:
        """Check items of named ACLs against every stage whose ACL calls them (transitively)."""
        callers: dict[str, Stage] = {}

        def visit(acl: Acl, stage: Stage, depth: int) -> None:
            if depth > 20:
                return
            for st in acl.statements:
                for use in st.items:
                    for name in _called_acls(use):
                        target = self.acls.get(name)
                        if target is None or target.name in {s.key for s in ORDERED}:
                            continue
                        if callers.get(target.name, Stage(0)) & stage:
                            continue
                        callers[target.name] = callers.get(target.name, Stage(0)) | stage
                        visit(target, stage, depth + 1)

        for stage in ORDERED:
            if stage.key in self.acls:
                visit(self.acls[stage.key], stage, 0)
        for name, stages in callers.items():
            for st in self.acls[name].statements:
                for use in st.items:
                    bad = stages & ~use.entry.stages
                    if bad:
                        self.err(use.mark, f"{use.name!r} in ACL {name} is not allowed in the "
                                           f"{', '.join(s.key for s in ORDERED if s & bad)} ACL that calls it")


def _called_acls(use: ItemUse) -> list[str]:
    """Named ACLs a statement item calls: `acl = name`, then every static `${acl{name}}`."""
    names = [use.static[0]] if use.name == "acl" and use.has_static else []
    if isinstance(use.expansion, expand.Expansion):
        names += aclcall.static_targets(use.expansion)
    return names


def load_text(text: str, file: str = "<policy>") -> Policy:
    """Parse and validate policy text. Raises PolicyErrors listing every mistake.

    Never raises anything else for any text: should a check trip over input nobody foresaw,
    that becomes one more error at the last position the loader reached (`check`, `serve`
    and reload then refuse the policy with file:line:column lines, never a traceback).
    """
    loader = _Loader(file, text)
    try:
        return loader.load()
    except PolicyErrors:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        detail = f"{type(exc).__name__}: {exc}"[:200]
        raise PolicyErrors([*loader.errors, PolicyError(loader.where, f"cannot check this ({detail})")]) from None


def load_file(path: str | Path) -> Policy:
    """Read and validate a policy file. Raises PolicyErrors (or OSError if unreadable)."""
    p = Path(path)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PolicyErrors([PolicyError(Mark(str(p), line, column), "the policy is not valid UTF-8")]) from None
    return load_text(text, str(p))
