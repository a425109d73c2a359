"""Scenario tests: YAML files in tests/scenarios/ (policy + session -> expected replies/edits).

Each scenario runs through the same Session the service uses (aclmilter.dryrun.simulate), with
no daemons: scenarios needing DNS/Redis/... live in the integration tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aclmilter.dryrun import SessionSpec, read_message, simulate
from aclmilter.runtime import Runtime

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


def _load() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(SCENARIO_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for sc in data["scenarios"]:
            out.append((f"{path.stem}: {sc['name']}", sc))
    return out


SCENARIOS = _load()


def run_scenario(sc: dict, tmp_path: Path) -> dict:
    policy = tmp_path / "policy.yaml"
    text = sc["policy"] if isinstance(sc["policy"], str) else yaml.safe_dump(sc["policy"], sort_keys=False)
    for name, content in (sc.get("files") or {}).items():
        (tmp_path / name).write_text(content)
        text = text.replace("@TMPFILE@", str(tmp_path / name))
    policy.write_text(text)
    runtime = Runtime(policy, monitor=bool(sc.get("dry_run", False)))
    runtime.load()
    s = sc["session"]
    spec = SessionSpec(client_ip=s.get("client_ip", "192.0.2.10"), sender=s.get("from", "sender@example.com"),
                       rcpts=list(s.get("rcpt", ["rcpt@example.org"])), helo=s.get("helo", "client.example.com"),
                       client_name=s.get("client_name", ""), macros=dict(s.get("macros", {})))
    if "message" in s:
        spec.headers, spec.body = read_message(s["message"].replace("@TMP@", str(tmp_path)).encode())
    return simulate(runtime, spec)


def _matches(actual: dict, expected: dict) -> bool:
    return all(actual.get(k) == v for k, v in expected.items())


@pytest.mark.parametrize("name,sc", SCENARIOS, ids=[n for n, _ in SCENARIOS])
def test_scenario(name: str, sc: dict, tmp_path: Path) -> None:
    report = run_scenario(sc, tmp_path)
    exp = sc["expect"]
    for want in exp.get("steps", []):
        assert any(_matches(step, want) for step in report["steps"]), (want, report["steps"])
    for stage in exp.get("absent_stages", []):
        assert all(step["stage"] != stage for step in report["steps"]), report["steps"]
    if "edits" in exp:
        assert report["edits"] is not None, report["steps"]
        for key, value in exp["edits"].items():
            assert report["edits"][key] == value, (key, report["edits"])
    logs = [line for st in report["stages"] for line in st["log_lines"]]
    for line in exp.get("log", []):
        assert any(line in got for got in logs), (line, logs)
    for line in exp.get("no_log", []):
        assert not any(line in got for got in logs), (line, logs)
    for stage_key, where in (exp.get("decided_by") or {}).items():
        recs = [st for st in report["stages"] if st["stage"] == stage_key]
        assert recs and recs[-1]["where"].endswith(where), (stage_key, where, recs)
    for var, value in (exp.get("variables") or {}).items():
        last = [st for st in report["stages"] if st["variables"]][-1]
        assert last["variables"].get(var) == value, (var, last["variables"].get(var))
