"""Scenario tests: YAML files in tests/scenarios/ (policy + session + fakes -> expected outcome).

Each scenario runs through the same Session the service uses (aclmilter.dryrun.simulate). The
world around it is data too, and every key is checked: an unknown key anywhere (a typo in
`expect:`) fails the scenario instead of asserting nothing.

- `dns:` zone data (tests/harness/fake_resolver.py) served to the real DnsClient, injected
  through Services; a name's value `servfail`/`timeout`/`refused` plays a broken DNS. Every
  scenario whose zone has no failure also runs in a `knot` flavour (integration): the same
  records served by a real knotd, reached through `settings.dns.nameservers`.
- `redis:` a real redis-server started by the harness (tests/harness/redis.py), preloaded with
  `data:`; `redis: down` points `redis_servers` at a closed loopback port. Real Redis rather
  than an in-process fake because ratelimit runs Lua scripts and the lookup relies on RESP
  reply types; those scenarios carry the `integration` marker.
- `dccifd:` the dccifd-protocol fake (tests/harness/fake_dccifd.py) on loopback, answering
  with the given Behaviour fields; `dccifd: down` points at a socket nobody listens on.
- `scanner:` a SPAMC/1.5 fake spamd (tests/harness/fake_spamd.py) as the BMI scanner;
  `scanner: down` points at a socket nobody listens on.

Names the package may rename (dry_run, the simulation switches) are translated in
`_runtime()` only.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from aclmilter.clients.dns import DnsClient, DnsSettings
from aclmilter.dryrun import SessionSpec, read_message, simulate
from aclmilter.runtime import Runtime
from tests.harness.fake_dccifd import Behaviour, FakeDccifd
from tests.harness.fake_resolver import ZoneResolver
from tests.harness.fake_spamd import FakeSpamd, SpamdVerdict
from tests.harness.knot import serve_records

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

# ---- the schema: every key a scenario may use --------------------------------------------------
TOP_KEYS = {"name", "policy", "files", "session", "expect", "dry_run", "update", "live", "dns", "redis", "dccifd", "scanner"}
SESSION_KEYS = {"client_ip", "client_port", "client_name", "helo", "from", "rcpt", "macros", "message",
                "mail_args", "rcpt_args"}
EXPECT_KEYS = {"steps", "absent_stages", "edits", "edits_match", "log", "no_log", "decided_by", "variables",
               "header_changes", "service_log", "dns_queries", "dccifd_requests", "scanner_requests", "redis"}
STEP_KEYS = {"stage", "recipient", "action", "reply", "drop"}
REDIS_KEYS = {"data"}
SCANNER_KEYS = {"spam", "score", "threshold", "rules"}
DCCIFD_KEYS = {"verdict", "rcpts", "header", "mode"}
DOWN = "down"


class ScenarioError(ValueError):
    """A scenario file that cannot be run as written (unknown key, wrong shape)."""


def _keys(where: str, value: Any, allowed: set[str]) -> None:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def validate(sc: Any, where: str = "scenario") -> None:
    """Refuse unknown keys anywhere in a scenario (raises ScenarioError)."""
    _keys(where, sc, TOP_KEYS)
    for required in ("name", "policy", "session", "expect"):
        if required not in sc:
            raise ScenarioError(f"{where}: missing {required!r}")
    _keys(f"{where}.session", sc["session"], SESSION_KEYS)
    exp = sc["expect"]
    _keys(f"{where}.expect", exp, EXPECT_KEYS)
    for i, step in enumerate(exp.get("steps", [])):
        _keys(f"{where}.expect.steps[{i}]", step, STEP_KEYS)
    for key, allowed in (("redis", REDIS_KEYS), ("scanner", SCANNER_KEYS), ("dccifd", DCCIFD_KEYS)):
        if key in sc and sc[key] != DOWN:
            _keys(f"{where}.{key}", sc[key], allowed)
    if "dns" in sc:
        _keys(f"{where}.dns", sc["dns"], set(sc["dns"]))   # a mapping; ZoneResolver checks the rest


def _load() -> list[Any]:
    out = []
    for path in sorted(SCENARIO_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        _keys(str(path), data, {"scenarios", "data"})   # data: YAML anchors shared by the file
        for i, sc in enumerate(data["scenarios"]):
            validate(sc, f"{path.name}[{i}]")
            marks = [pytest.mark.integration] if "redis" in sc else []
            out.append(pytest.param(sc, "fake", id=f"{path.stem}: {sc['name']}", marks=marks))
            if "dns" in sc and not ZoneResolver(sc["dns"] or {}).failures:
                out.append(pytest.param(sc, "knot", id=f"{path.stem}: {sc['name']} [knot]",
                                        marks=[pytest.mark.integration]))
    return out


SCENARIOS = _load()


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runtime(policy: Path, sc: dict, overrides: dict[str, Any]) -> Runtime:
    """The one place where scenario words meet Runtime's parameter names."""
    # dry_run: the policy's monitor mode. update: a simulation normally leaves shared state
    # (Redis, ratelimit records) alone; `update: true` lets it write, as `aclmilter test --update`.
    return Runtime(policy, monitor=bool(sc.get("dry_run", False)), update=bool(sc.get("update", False)),
                   overrides=overrides)


@contextlib.contextmanager
def world(sc: dict, tmp_path: Path, redis: Any = None, flavour: str = "fake") -> Iterator[dict[str, Any]]:
    """Start the fakes a scenario asks for; yield settings to merge, overrides and the fakes."""
    out: dict[str, Any] = {"settings": {}, "overrides": {}}
    with contextlib.ExitStack() as stack:
        if "dns" in sc and flavour == "knot":
            zone = ZoneResolver(sc["dns"] or {})
            server = stack.enter_context(serve_records(zone.records(), tmp_path / "knot"))
            out["settings"]["dns"] = {"nameservers": [f"127.0.0.1:{server.port}"], "timeout": 2, "lifetime": 5}
        elif "dns" in sc:
            resolver = ZoneResolver(sc["dns"] or {})
            out["resolver"] = resolver
            out["overrides"]["dns"] = DnsClient(DnsSettings(), resolver)  # type: ignore[arg-type]
        if "dccifd" in sc:
            if sc["dccifd"] == DOWN:
                out["settings"]["dccifd_address"] = str(tmp_path / "no-dccifd")
            else:
                fake = stack.enter_context(FakeDccifd.tcp("127.0.0.1"))
                fake.default = Behaviour(**sc["dccifd"])
                out["dccifd"] = fake
                out["settings"]["dccifd_address"] = fake.address
        if "scanner" in sc:
            if sc["scanner"] == DOWN:
                address = str(tmp_path / "no-spamd.sock")
            else:
                spamd = stack.enter_context(FakeSpamd(SpamdVerdict(**sc["scanner"])))
                out["spamd"] = spamd
                address = spamd.address
            out["settings"]["bmi"] = {"scanner": {"type": "spamd", "address": address, "timeout": 5}}
        if "redis" in sc:
            if sc["redis"] == DOWN:
                out["settings"]["redis_servers"] = [f"127.0.0.1:{_closed_port()}"]
            else:
                client = redis.client()
                client.flushall()
                for key, value in (sc["redis"].get("data") or {}).items():
                    if isinstance(value, list):
                        client.sadd(key, *value)
                    elif isinstance(value, dict):
                        client.hset(key, mapping=value)
                    else:
                        client.set(key, value)
                out["redis_client"] = client
                out["settings"]["redis_servers"] = [redis.spec]
        yield out


def _policy_text(sc: dict, tmp_path: Path, extra_settings: dict) -> str:
    text = sc["policy"] if isinstance(sc["policy"], str) else yaml.safe_dump(sc["policy"], sort_keys=False)
    for name, content in (sc.get("files") or {}).items():
        (tmp_path / name).write_text(content)
        text = text.replace("@TMPFILE@", str(tmp_path / name))
    if not extra_settings:
        return text
    doc = yaml.safe_load(text)
    settings = doc.setdefault("settings", {}) or {}
    for key, value in extra_settings.items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    doc["settings"] = settings
    return yaml.safe_dump(doc, sort_keys=False)


def run_scenario(sc: dict, tmp_path: Path, fakes: dict[str, Any]) -> dict:
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy_text(sc, tmp_path, fakes["settings"]))
    runtime = _runtime(policy, sc, fakes["overrides"])
    runtime.load()
    s = sc["session"]
    spec = SessionSpec(client_ip=s.get("client_ip", "192.0.2.10"), sender=s.get("from", "sender@example.com"),
                       rcpts=list(s.get("rcpt", ["rcpt@example.org"])), helo=s.get("helo", "client.example.com"),
                       client_name=s.get("client_name", ""), client_port=int(s.get("client_port", 0)),
                       macros=dict(s.get("macros", {})), mail_args=list(s.get("mail_args", [])),
                       rcpt_args=list(s.get("rcpt_args", [])))
    if "message" in s:
        spec.headers, spec.body = read_message(s["message"].replace("@TMP@", str(tmp_path)).encode())
    # The service log ("aclmilter" logger) is collected for `expect.service_log`.
    lines: list[str] = []
    handler = _Collect(lines)
    logger = logging.getLogger("aclmilter")
    logger.addHandler(handler)
    try:
        # live: the service's own side effects (event actions run); see _runtime() for the words.
        report = simulate(runtime, spec, live=bool(sc.get("live", False)))
    finally:
        logger.removeHandler(handler)
        runtime.current().services.close()
    report["service_log"] = lines
    return report


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _matches(actual: dict, expected: dict) -> bool:
    return all(actual.get(k) == v for k, v in expected.items())


def check(report: dict, exp: dict, fakes: dict[str, Any]) -> None:
    """Assert every expectation of `exp` on the report and on what the fakes saw."""
    for want in exp.get("steps", []):
        assert any(_matches(step, want) for step in report["steps"]), (want, report["steps"])
    for stage in exp.get("absent_stages", []):
        assert all(step["stage"] != stage for step in report["steps"]), report["steps"]
    if "edits" in exp:
        assert report["edits"] is not None, report["steps"]
        for key, value in exp["edits"].items():
            assert key in report["edits"], (key, sorted(report["edits"]))
            assert report["edits"][key] == value, (key, report["edits"])
    for key, pattern in (exp.get("edits_match") or {}).items():
        assert report["edits"] is not None and key in report["edits"], (key, report["edits"])
        assert re.fullmatch(pattern, str(report["edits"][key])), (key, pattern, report["edits"][key])
    for want in exp.get("header_changes", []):
        assert want in report["header_changes"], (want, report["header_changes"])
    logs = [line for st in report["stages"] for line in st["log_lines"]]
    for line in exp.get("log", []):
        assert any(line in got for got in logs), (line, logs)
    for line in exp.get("service_log", []):
        assert any(line in got for got in report["service_log"]), (line, report["service_log"])
    for line in exp.get("no_log", []):
        assert not any(line in got for got in logs), (line, logs)
    for stage_key, where in (exp.get("decided_by") or {}).items():
        recs = [st for st in report["stages"] if st["stage"] == stage_key]
        assert recs and recs[-1]["where"].endswith(where), (stage_key, where, recs)
    if exp.get("variables"):
        with_vars = [st for st in report["stages"] if st["variables"]]
        assert with_vars, "no stage recorded variables"
        for var, value in exp["variables"].items():
            assert with_vars[-1]["variables"].get(var) == value, (var, with_vars[-1]["variables"].get(var))
    for q in exp.get("dns_queries", []):
        name, _, rdtype = q.partition("/")
        assert (name.lower(), rdtype.upper()) in fakes["resolver"].queries, (q, fakes["resolver"].queries)
    if "dccifd_requests" in exp:
        assert len(fakes["dccifd"].requests) == exp["dccifd_requests"], fakes["dccifd"].requests
    if "scanner_requests" in exp:
        assert len(fakes["spamd"].requests) == exp["scanner_requests"]
    for key, value in (exp.get("redis") or {}).items():
        got = fakes["redis_client"].get(key)
        assert (got.decode() if isinstance(got, bytes) else got) == value, (key, got)


@pytest.mark.parametrize("sc,flavour", SCENARIOS)
def test_scenario(sc: dict, flavour: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    redis = request.getfixturevalue("redis_module_server") if isinstance(sc.get("redis"), dict) else None
    with world(sc, tmp_path, redis, flavour) as fakes:
        report = run_scenario(sc, tmp_path, fakes)
        exp = sc["expect"]
        if flavour == "knot":      # a real server's questions are not recorded here
            exp = {k: v for k, v in exp.items() if k != "dns_queries"}
        check(report, exp, fakes)


# ---- the runner itself -----------------------------------------------------------------------
def _minimal(**extra: Any) -> dict:
    sc = {"name": "x", "policy": {"acl": {"rcpt": ["accept"]}}, "session": {}, "expect": {}}
    sc.update(extra)
    return sc


@pytest.mark.parametrize("bad,where", [
    (_minimal(expect={"step": []}), "expect"),
    (_minimal(expect={"steps": [{"stage": "rcpt", "acton": "continue"}]}), "steps[0]"),
    (_minimal(session={"form": "a@b"}), "session"),
    (_minimal(dnss={}), "scenario"),
    (_minimal(scanner={"spam": True, "scroe": 3}), "scanner"),
    (_minimal(redis={"dat": {}}), "redis"),
    (_minimal(dccifd={"verdikt": "A"}), "dccifd"),
])
def test_unknown_keys_are_refused(bad: dict, where: str) -> None:
    with pytest.raises(ScenarioError, match="unknown key") as exc:
        validate(bad)
    assert where in str(exc.value)


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    sc = _minimal(policy={"acl": {"rcpt": [{"deny": {"message": "550 no"}}]}})
    with world(sc, tmp_path) as fakes:
        report = run_scenario(sc, tmp_path, fakes)
    check(report, {"steps": [{"stage": "rcpt", "action": "reject", "reply": "550 5.7.1 no"}]}, fakes)
    with pytest.raises(AssertionError):
        check(report, {"steps": [{"stage": "rcpt", "action": "continue"}]}, fakes)
    with pytest.raises(AssertionError):
        check(report, {"variables": {"no_such": "x"}}, fakes)
    with pytest.raises(AssertionError):
        check(report, {"service_log": ["never logged"]}, fakes)


#: feature -> the dependency whose death a scenario shows (None: the feature has none).
FEATURES = {"SPF": "DNS", "DKIM": "DNS", "DMARC": "DNS", "ARC": "DNS", "DCC": "dccifd", "BMI": "scanner",
            "ratelimit": "Redis", "Redis lookup": "Redis", "events": "Redis", "PROXY": None, "SRS": None,
            "ESMTP": None, "hosts": "DNS"}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_every_feature_has_scenarios_and_a_dead_dependency(feature: str) -> None:
    names = [p.values[0]["name"] for p in SCENARIOS if p.values[1] == "fake"]
    mine = [n for n in names if n.startswith(feature + " ") or n.startswith(feature + "/")]
    assert len(mine) >= 2, (feature, mine)
    if FEATURES[feature] is not None:
        assert any(n.startswith(f"{feature} dependency dead") for n in mine), (feature, mine)
