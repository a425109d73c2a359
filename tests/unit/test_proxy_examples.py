"""policies/examples/proxy.yaml (the seed's PROXY ACL examples) behaves as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from aclmilter.dryrun import SessionSpec, simulate
from aclmilter.runtime import Runtime

POLICY = Path(__file__).resolve().parents[2] / "policies" / "examples" / "proxy.yaml"


@pytest.fixture
def runtime() -> Runtime:
    # update=True: the burst test needs the simulated sessions to write their rates
    rt = Runtime(POLICY, monitor=False, update=True)
    rt.load()
    return rt


def _session(rt: Runtime, ip: str, daemon_name: str, port: int = 4711) -> dict:
    macros = {"{daemon_name}": daemon_name, "{daemon_addr}": "198.51.100.25", "{daemon_port}": "25",
              "{client_port}": str(port)}
    return simulate(rt, SessionSpec(client_ip=ip, sender="a@example.org", rcpts=["b@example.org"],
                                    client_name="mail.example.net", macros=macros))


def _logs(report: dict) -> list[str]:
    return [line for st in report["stages"] for line in st["log_lines"]]


def test_successfully_proxied_session_is_logged_with_all_addresses(runtime: Runtime) -> None:
    rep = _session(runtime, "203.0.113.7", "proxied")
    logs = _logs(rep)
    assert ("Warning: Successfully proxied from mail.example.net [203.0.113.7] through proxy protocol "
            "host 192.0.2.2") in logs
    assert "Remote Source Address: 203.0.113.7:4711" in logs
    assert "Proxy Target Address: 198.51.100.25:25" in logs
    assert "Proxy Internal Address: 192.0.2.2:" in logs
    assert not any("Failed required proxy" in x for x in logs)
    assert rep["steps"][-1] == {"stage": "eom", "recipient": None, "action": "continue", "reply": None,
                                "drop": False}


def test_health_probe_from_the_proxy_itself_is_not_logged_as_proxied(runtime: Runtime) -> None:
    logs = _logs(_session(runtime, "192.0.2.2", "proxied"))
    assert not any("Successfully proxied" in x for x in logs)
    assert not any("Failed required proxy" in x for x in logs)


def test_required_host_without_proxy_fails_negotiation(runtime: Runtime) -> None:
    rep = _session(runtime, "192.0.2.5", "mx")
    assert "Warning: Failed required proxy protocol negotiation from mail.example.net [192.0.2.5]" in _logs(rep)
    helo = [s for s in rep["steps"] if s["stage"] == "helo"][0]
    assert helo["reply"] == "503 5.7.0 Command refused, required Proxy negotiation failed"


def test_per_connection_rate_limit_defers_a_burst(runtime: Runtime) -> None:
    actions = [_session(runtime, "203.0.113.9", "proxied", port=5000 + i)["steps"][0]
               for i in range(7)]
    assert [a["action"] for a in actions[:4]] == ["continue"] * 4
    deferred = [a for a in actions if a["action"] == "tempfail"]
    assert deferred and deferred[0]["reply"] == "451 4.7.1 Too many connections from this IP right now"
    # another client has its own rate
    assert _session(runtime, "203.0.113.10", "proxied")["steps"][0]["action"] == "continue"
