"""The registry is the one source of `policy show`, the tables of docs/policy.md and the man pages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from aclmilter import docgen, regdoc

ROOT = Path(__file__).resolve().parents[2]


def test_committed_docs_are_what_the_registry_generates() -> None:
    assert docgen.stale(ROOT) == [], "run: .venv/bin/python -m aclmilter.docgen --write"


def test_every_condition_and_modifier_documents_its_outcomes_including_defer() -> None:
    undocumented = [name for name, item in regdoc.project_items().items()
                    if "DEFER" not in item.doc or not any(w in item.doc for w in ("OK", "true", "True", "TRUE"))]
    assert undocumented == []


def test_policy_show_name_gives_yaml_from_the_registry() -> None:
    proc = subprocess.run([sys.executable, "-m", "aclmilter.cli", "policy", "show", "spf"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)["spf"]
    cond = data["conditions and modifiers"]
    assert cond["kind"] == "condition" and cond["stages"] == "mail, rcpt, predata, data"
    assert "never DEFER" in cond["description"] and "$spf_result" in cond["variables"]
    assert data["checks"]["scope"] == "transaction"


def test_policy_show_everything_renders_defaults_as_yaml_not_reprs() -> None:
    data = yaml.safe_load(regdoc.show())
    bmi = data["settings"]["bmi"]["default"]
    assert bmi["on_scanner_failure"] == "tempfail" and bmi["profiles"] == []
    assert data["settings"]["on_internal_error"]["default"] == "tempfail"
    assert set(data) == {"conditions and modifiers", "controls", "settings", "variables", "checks", "lookups"}
    text = regdoc.show()
    assert "Settings(" not in text and "<FailureOutcome" not in text     # no Python reprs


def test_unknown_name_is_an_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "aclmilter.cli", "policy", "show", "nonesuch"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "nonesuch" in proc.stderr


def test_man_pages_list_every_option_and_every_item() -> None:
    service = (ROOT / docgen.MAN_SERVICE).read_text()
    for opt in ("\\-\\-dry\\-run", "\\-\\-log\\-format", "\\-\\-update", "\\-\\-quiet"):
        assert opt in service
    policy = (ROOT / docgen.MAN_POLICY).read_text()
    assert len(regdoc.project_items()) >= 30
    for name in regdoc.project_items():
        assert f"\\fB{docgen.roff(name)}\\fR" in policy
