"""`aclmilter check` reports every mistake as file:line:column (at least 15 kinds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aclmilter.cli import main
from aclmilter.errors import PolicyErrors
from aclmilter.policy.loader import load_text

# (policy text, line, column, words the message must contain)
CASES = [
    ("acl:\n  rcpt:\n    - accpet\n", 3, 7, "unknown verb"),
    ("acl:\n  rcpt:\n    - deny: {hostz: '*'}\n", 3, 14, "unknown condition or modifier 'hostz'"),
    ("acl:\n  connect:\n    - deny: {domains: example.org}\n", 3, 14, "not allowed in the connect ACL"),
    ("acl:\n  rcpt:\n    - deny: {'!message': hi}\n", 3, 14, "cannot be negated"),
    ("acl:\n  rcpt:\n    - deny: {hosts: +nolist}\n", 3, 21, "nolist"),
    ("acl:\n  rcpt:\n    - deny: {hosts: 1.2.3/24}\n", 3, 21, "1.2.3/24"),
    ("acl:\n  rcpt:\n    - deny: {condition: '${if eq{a}{b}'}\n", 3, 26, "missing '}'"),
    ("acl:\n  rcpt:\n    - deny: {condition: '$nosuchvariable'}\n", 3, 26, "nosuchvariable"),
    ("acl:\n  rcpt:\n    - deny: {condition: '${run{/bin/true}}'}\n", 3, 26, "run"),
    ("settings:\n  nosuchsetting: 1\n", 2, 3, "unknown setting"),
    ("settings:\n  on_internal_error: explode\n", 2, 22, "on_internal_error"),
    ("bogus: 1\n", 1, 1, "unknown top-level key"),
    ("acl:\n  rcpt:\n    - deny: {hosts: a, hosts: b}\n", 3, 24, "duplicate key"),
    ("acl:\n  rcpt:\n    - warn: {endpass: ''}\n", 3, 14, "endpass is allowed only"),
    ("acl:\n  rcpt:\n    - deny: {control: no_such_control}\n", 3, 23, "unknown control"),
    ("acl:\n  rcpt:\n    - deny: {acl: missing_acl}\n", 3, 19, "no ACL named"),
    ("acl:\n  rcpt:\n    - deny: {set: 'nonvar = 1'}\n", 3, 20, "not an ACL variable"),
    ("acl:\n  rcpt:\n    - deny: {delay: 'soon'}\n", 3, 22, "bad time interval"),
    ("acl:\n  rcpt: [deny: {message: x}\n", 3, 1, "YAML syntax error"),
    ("acl:\n  deliver:\n    - accept: {redirect: 'not an address'}\n", 3, 27, "redirect"),
]


@pytest.mark.parametrize("text,line,column,words", CASES, ids=[c[3] for c in CASES])
def test_error_position_and_message(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(PolicyErrors) as info:
        load_text(text, "p.yaml")
    errors = info.value.errors
    assert any(e.mark.line == line and e.mark.column == column and words in e.message for e in errors), \
        [str(e) for e in errors]


def test_all_errors_are_reported_at_once() -> None:
    text = "acl:\n  rcpt:\n    - deny: {hostz: '*'}\n    - accpet\n  connect:\n    - deny: {domains: x}\n"
    with pytest.raises(PolicyErrors) as info:
        load_text(text, "p.yaml")
    assert [e.mark.line for e in info.value.errors] == [3, 4, 6]


def test_check_cli_exit_status_and_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CASES[0][0])
    good = tmp_path / "good.yaml"
    good.write_text("acl:\n  rcpt:\n    - deny: {domains: example.org}\n    - accept\n")
    assert main(["check", str(good)]) == 0
    out = capsys.readouterr().out
    assert f"{good}: OK" in out and "answers needed at: rcpt; headers and body needed: no" in out
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:7: unknown verb" in err


def test_shipped_policies_validate() -> None:
    root = Path(__file__).resolve().parents[2] / "policies"
    files = sorted(root.glob("*.yaml")) + sorted(root.glob("examples/*.yaml"))
    assert files
    proc = subprocess.run([sys.executable, "-m", "aclmilter.cli", "check", *map(str, files)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
