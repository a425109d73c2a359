# SPDX-License-Identifier: GPL-3.0-or-later
"""No policy text makes the loader raise anything but file:line:column errors (issue 24, point 3).

A seeded mutator (tests/fixtures/policyfuzz/mutator.py) edits every shipped policy 5,000
times in all; each result is loaded and analysed in process, as `aclmilter check`, `serve`
and a reload do. Anything but a valid policy or PolicyErrors whose every line is
`file:line:column: message` fails the test, with the mutated text to reproduce it.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from aclmilter.errors import PolicyErrors
from aclmilter.policy.loader import load_file, load_text
from aclmilter.policy.needs import analyse
from tests.fixtures.policyfuzz.mutator import mutate

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "policies").rglob("*.yaml"))
MUTATIONS = 5000
POSITIONED = re.compile(r"^\S.*:\d+:\d+: \S")


def _outcome(text: str, file: str) -> str:
    """"ok", or "refused" when every error is positioned; raises for anything else."""
    try:
        analyse(load_text(text, file))
    except PolicyErrors as exc:
        bad = [str(e) for e in exc.errors if not POSITIONED.match(str(e))]
        assert exc.errors and not bad, bad
        return "refused"
    return "ok"


def test_every_shipped_policy_is_valid():
    assert len(SHIPPED) >= 5
    assert all(_outcome(p.read_text(), str(p)) == "ok" for p in SHIPPED)


def test_seeded_mutations_of_every_shipped_policy():
    texts = [(str(p), p.read_text()) for p in SHIPPED]
    rng = random.Random(24)
    seen = {"ok": 0, "refused": 0}
    for n in range(MUTATIONS):
        file, text = texts[n % len(texts)]
        mutated = mutate(text, rng)
        try:
            seen[_outcome(mutated, file)] += 1
        except Exception as exc:  # noqa: BLE001 - report the input that broke it
            pytest.fail(f"mutation {n} of {file} raised {type(exc).__name__}: {exc}\n--- text ---\n{mutated}")
    # Both kinds occur: the mutator neither only breaks nor only keeps policies valid.
    assert seen["refused"] > MUTATIONS // 4 and seen["ok"] > MUTATIONS // 50, seen


@pytest.mark.parametrize("text, where, words", [
    ("settings:\n  ? {a: 1}\n  : 1\n", ":2:", "a key must be a plain string"),
    ("settings:\n  dkim_max_signatures:\n    ? {a: 1}\n    : 1\n", ":3:", "unhashable key"),
    ("settings:\n  dmarc_tld_file: &x [*x]\n", ":2:", "recursive node"),
    ("settings:\n  dkim_max_signatures: &x [*x]\n", ":2:", "dkim_max_signatures"),
    ("settings:\n  spf_result_cache_ttl: .inf\n", ":2:", "spf_result_cache_ttl"),
    ("settings:\n  dkim_max_signatures: .inf\n", ":2:", "not a number"),
    ("settings:\n  dkim_max_signatures: .nan\n", ":2:", "dkim_max_signatures"),
    ("settings:\n  dkim_max_signatures: " + "9" * 5000 + "\n", ":2:", "dkim_max_signatures"),
    ("settings:\n  primary_hostname: !!python/object:os.system x\n", ":2:", "constructor"),
    ("settings:\n  primary_hostname: !!timestamp x\n", ":2:", "primary_hostname: value cannot be read"),
    ("acl: &x\n  rcpt: *x\n", ":1:", "list of statements"),
    ("acl:\n  rcpt: " + "[" * 3000 + "]" * 3000 + "\n", ":1:", "nesting"),
])
def test_reported_inputs_are_positioned_errors(text, where, words):
    with pytest.raises(PolicyErrors) as info:
        load_text(text, "p.yaml")
    lines = [str(e) for e in info.value.errors]
    assert all(POSITIONED.match(line) for line in lines), lines
    assert any(line.startswith("p.yaml" + where) and words in line for line in lines), lines


def test_a_file_that_is_not_utf8_is_a_positioned_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"settings:\n  primary_hostname: caf\xe9\n")
    with pytest.raises(PolicyErrors) as info:
        load_file(path)
    assert [str(e) for e in info.value.errors] == [f"{path}:2:24: the policy is not valid UTF-8"]
