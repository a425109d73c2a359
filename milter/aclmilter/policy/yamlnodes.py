"""YAML composition with positions: nodes keep file:line:column; duplicate keys are errors."""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import Mark, PolicyError


def mark_of(node: yaml.Node, file: str) -> Mark:
    """The 1-based position of a node's first character."""
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)


def value_mark(node: yaml.Node, file: str, offset: int) -> Mark:
    """Position of character `offset` inside a scalar's value (exact for one-line scalars)."""
    base = mark_of(node, file)
    style = getattr(node, "style", None)
    quote = 1 if style in ("'", '"') else 0
    if isinstance(node, yaml.ScalarNode) and "\n" not in node.value and style not in ("|", ">"):
        return base.shifted(offset + quote)
    return base


def compose(text: str, file: str) -> yaml.Node | None:
    """Parse YAML text into a node tree; a YAML syntax error becomes a PolicyError."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        mark = Mark(file, m.line + 1, m.column + 1) if m else Mark(file, 1, 1)
        raise PolicyError(mark, f"YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(Mark(file, 1, 1), f"YAML error: {exc}") from None
    except RecursionError:   # PyYAML composes nested collections recursively
        raise PolicyError(Mark(file, 1, 1), "YAML nesting too deep") from None


def mapping_items(node: yaml.MappingNode, file: str, errors: list[PolicyError]
                  ) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """Return (key, key_node, value_node) in file order; report duplicate and non-scalar keys."""
    seen: dict[str, Mark] = {}
    out: list[tuple[str, yaml.Node, yaml.Node]] = []
    for knode, vnode in node.value:
        if not isinstance(knode, yaml.ScalarNode):
            errors.append(PolicyError(mark_of(knode, file), "a key must be a plain string"))
            continue
        key = knode.value
        if key in seen:
            errors.append(PolicyError(mark_of(knode, file),
                                      f"duplicate key {key!r} (first at line {seen[key].line}); use a list "
                                      "of one-key mappings to repeat a condition"))
            continue
        seen[key] = mark_of(knode, file)
        out.append((key, knode, vnode))
    return out


def to_python(node: yaml.Node, file: str = "<policy>") -> Any:
    """Convert a node (and its children) to plain Python values with YAML's safe rules.

    Raises PolicyError at the offending node for what has no plain value: an unknown or
    unsafe tag, a mapping used as a key (`? {a: 1}`), a node that contains itself (`&x [*x]`).
    """
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        mark = Mark(file, m.line + 1, m.column + 1) if m else mark_of(node, file)
        raise PolicyError(mark, f"{exc.problem or exc.context}") from None
    except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise ValueError (an integer
        # beyond Python's digit limit), AttributeError (`!!timestamp x`), RecursionError (nesting)...
        raise PolicyError(mark_of(node, file), f"value cannot be read: {type(exc).__name__}: {exc}"[:300]) from None
    finally:
        loader.dispose()


def scalar_text(node: yaml.Node) -> str | None:
    """The literal text of a scalar as written (so `true` stays "true", `5` stays "5")."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~", "null", "Null", "NULL"):
            return ""
        return str(node.value)
    return None
