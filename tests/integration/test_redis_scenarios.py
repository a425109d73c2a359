# SPDX-License-Identifier: GPL-3.0-or-later
"""policies/examples/redis.yaml through `aclmilter test --json` with a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.redis import RedisServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "policies" / "examples" / "redis.yaml"


@pytest.fixture
def policy(tmp_path: Path, redis_module_server: RedisServer) -> Path:
    r = redis_module_server.client()
    r.flushdb()
    r.sadd("relay_from_ips", "192.168.0.0/24", "10.0.0.0/8")
    r.hset("example.com", "domain", "example.com")
    r.set("192.0.2.66", "listed")
    text = EXAMPLE.read_text().replace("127.0.0.1:6390/0/", redis_module_server.spec)
    assert redis_module_server.spec in text
    path = tmp_path / "redis.yaml"
    path.write_text(text)
    return path


def dry_run(policy: Path, ip: str, rcpts: list[str]) -> dict:
    cmd = [sys.executable, "-m", "aclmilter.cli", "test", "--policy", str(policy), "--client-ip", ip,
           "--from", "sender@example.net", "--json", "--update"]   # these scenarios write to Redis
    for r in rcpts:
        cmd += ["--rcpt", r]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def actions(report: dict) -> list[tuple[str, str | None, str]]:
    return [(s["stage"], s["recipient"], s["action"]) for s in report["steps"]]


def test_relay_hosts_come_from_a_redis_set(policy):
    report = dry_run(policy, "10.1.2.3", ["anyone@elsewhere.example"])
    assert ("rcpt", "anyone@elsewhere.example", "continue") in actions(report)


def test_virtual_domains_from_redis_hash_and_set_get(policy, redis_module_server):
    report = dry_run(policy, "192.0.2.66", ["user@example.com", "user@elsewhere.example"])
    steps = {(s["stage"], s["recipient"]): s for s in report["steps"]}
    assert steps[("rcpt", "user@example.com")]["action"] == "continue"
    assert steps[("rcpt", "user@elsewhere.example")]["action"] == "reject"
    assert steps[("rcpt", "user@elsewhere.example")]["reply"].startswith("550 5.7.1 Relaying denied")
    connect = next(s for s in report["stages"] if s["stage"] == "connect")
    assert connect["variables"]["acl_c_spam_host"] == "listed"       # GET example
    assert connect["variables"]["acl_c_spammer"] == "yes"            # SET example replied OK
    assert redis_module_server.client().get("SPAMMER") == "192.0.2.66"


def test_connection_limiter_uses_the_shared_redis_rate(policy, redis_module_server):
    r = redis_module_server.client()
    report = dry_run(policy, "198.51.100.20", ["user@example.com"])
    assert actions(report)[0] == ("connect", None, "continue")
    key = "aclmilter:ratelimit:{5s/per_conn/198.51.100.20}"
    assert float(r.hget(key, "rate")) == 1.0                        # recorded by another process
    # Another milter process saw a flood from this client a moment ago (a huge rate, "now"):
    r.hset(key, mapping={"rate": "1e9", "time": repr(time.time())})
    report = dry_run(policy, "198.51.100.20", ["user@example.com"])
    first = report["steps"][0]
    assert (first["stage"], first["action"]) == ("connect", "tempfail")
    assert "Too many connections from this IP right now" in first["reply"]
    connect = report["stages"][0]
    assert float(connect["variables"]["sender_rate"]) > 5
    assert connect["variables"]["sender_rate_limit"] == "5"
    assert connect["variables"]["sender_rate_period"] == "5s"


def test_redis_down_means_4xx_never_accept(tmp_path):
    dead = RedisServer(tmp_path / "dead")          # never started: nothing listens on its port
    text = EXAMPLE.read_text().replace("127.0.0.1:6390/0/", dead.spec)
    path = tmp_path / "redis.yaml"
    path.write_text(text)
    report = dry_run(path, "10.1.2.3", ["a@example.com"])
    assert report["steps"][0]["action"] == "tempfail"
    assert report["steps"][0]["reply"].startswith("451")
    assert all(s["action"] in ("tempfail", "continue") for s in report["steps"])
    rcpt = [s for s in report["steps"] if s["stage"] == "rcpt"]
    assert rcpt and all(s["action"] == "tempfail" for s in rcpt)
