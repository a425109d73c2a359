"""Rules the test suite keeps about itself, checked by walking its source (AST).

- every module under tests/integration carries the `integration` marker at module level, so
  `-m "not integration"` really runs no daemon;
- every `zip()` in tests/ passes `strict=True`: a zip over lists of different lengths stops at
  the shorter one, and an assertion loop over it can then pass without checking anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
INTEGRATION = sorted((TESTS / "integration").glob("test_*.py"))


def _marks(node: ast.expr) -> list[ast.expr]:
    return list(node.elts) if isinstance(node, (ast.List, ast.Tuple)) else [node]


def _is_integration_mark(node: ast.expr) -> bool:
    # pytest.mark.integration, or pytest.mark.integration(...)
    if isinstance(node, ast.Call):
        node = node.func
    return isinstance(node, ast.Attribute) and node.attr == "integration" and \
        isinstance(node.value, ast.Attribute) and node.value.attr == "mark"


def module_is_marked(source: str) -> bool:
    """True when the module assigns `pytestmark` at top level and it includes the marker."""
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                for t in stmt.targets):
            return any(_is_integration_mark(m) for m in _marks(stmt.value))
    return False


def unstrict_zips(source: str) -> list[int]:
    """Line numbers of zip(...) calls without strict=True."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "zip":
            strict = [k for k in node.keywords if k.arg == "strict"]
            if not (strict and isinstance(strict[0].value, ast.Constant) and strict[0].value.value is True):
                out.append(node.lineno)
    return out


def test_there_are_integration_modules() -> None:
    assert len(INTEGRATION) > 20


@pytest.mark.parametrize("path", INTEGRATION, ids=[p.name for p in INTEGRATION])
def test_integration_module_is_marked(path: Path) -> None:
    assert module_is_marked(path.read_text()), f"{path}: add `pytestmark = pytest.mark.integration`"


def test_marker_checker_sees_a_missing_or_wrong_mark() -> None:
    assert module_is_marked("import pytest\npytestmark = pytest.mark.integration\n")
    assert module_is_marked("import pytest\npytestmark = [pytest.mark.slow, pytest.mark.integration]\n")
    assert not module_is_marked("import pytest\npytestmark = pytest.mark.slow\n")
    assert not module_is_marked("import pytest\ndef test_x():\n    pytestmark = pytest.mark.integration\n")


def test_every_zip_in_tests_is_strict() -> None:
    bad = [f"{p.relative_to(TESTS)}:{line}" for p in sorted(TESTS.rglob("*.py"))
           for line in unstrict_zips(p.read_text())]
    assert bad == [], "zip() without strict=True: " + ", ".join(bad)


def test_zip_checker_sees_an_unstrict_zip() -> None:
    assert unstrict_zips("zip(a, b)\nzip(a, b, strict=True)\nzip(a, strict=False)\n") == [1, 3]


def _constructs_eval_context(source: str) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "EvalContext"
                                               or getattr(node.func, "attr", None) == "EvalContext")]


def test_one_context_builder() -> None:
    """Only tests/builders.py builds an EvalContext; every helper goes through make_ctx/at."""
    bad = [f"{p.relative_to(TESTS)}:{line}" for p in sorted(TESTS.rglob("*.py")) if p.name != "builders.py"
           for line in _constructs_eval_context(p.read_text())]
    assert bad == [], "build contexts with tests/builders.py: " + ", ".join(bad)
    assert _constructs_eval_context("from x import EvalContext\nEvalContext(1)\ncontext.EvalContext(2)\n") == [2, 3]
