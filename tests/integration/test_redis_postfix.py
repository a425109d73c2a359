# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis end to end: Postfix -> aclmilter serve -> redis-server; Redis killed -> 4xx, recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import postfix_instance, simple_message, world_traversable_dir
from tests.harness.redis import RedisServer
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

POLICY = """
settings:
  primary_hostname: mx.test.example
  redis_servers: ["{spec}"]
  redis_timeout: 2
hostlist:
  relay_from_ips: "<\\n ${{lookup redis{{SMEMBERS relay_from_ips}}}}"
acl:
  mail:
    - defer:
        message: "451 4.7.1 Too many messages from this IP right now"
        ratelimit: 1000 / 1h / per_mail / strict
    - accept
  rcpt:
    - accept:
        hosts: +relay_from_ips
    - deny:
        message: "550 5.7.1 Relaying denied"
"""


def test_redis_outage_gives_4xx_through_postfix_and_recovers(tmp_path: Path) -> None:
    work = world_traversable_dir("redis-e2e-")
    redis = RedisServer(tmp_path / "redis").start()
    try:
        policy = work / "redis.yaml"
        policy.write_text(POLICY.format(spec=redis.spec))
        with Sink() as sink, AclMilterd(policy, workdir=work) as milter:
            with postfix_instance(sink.port, milter=milter.postfix_spec) as pf:
                def send():  # SendResult
                    return pf.send("alice@example.org", ["bob@example.test"],
                                   simple_message("alice@example.org", "bob@example.test", subject="redis e2e"))

                # Not in the Redis set (empty) -> the policy's 550.
                r = send()
                assert r.rcpt["bob@example.test"][0] == 550
                # The client's network in the set -> accepted and delivered.
                redis.client().sadd("relay_from_ips", "127.0.0.0/8", "::1")
                r = send()
                assert r.accepted, r
                rate_key = "aclmilter:ratelimit:{1h/per_mail/127.0.0.1}"
                assert float(redis.client().hget(rate_key, "rate")) > 1.5    # two messages, 1h period
                # Redis dies: the ratelimit at MAIL cannot be tested -> 4xx, nothing accepted.
                redis.stop()
                r = send()
                assert r.mail is not None and 400 <= r.mail[0] < 500, r
                assert not r.accepted
                # Redis is back (empty, no persistence): same milter process, no restart.
                redis.start()
                redis.client().sadd("relay_from_ips", "127.0.0.0/8")
                r = send()
                assert r.accepted, r
                assert milter.proc.poll() is None                  # never crashed
                assert float(redis.client().hget(rate_key, "rate")) == 1.0
    finally:
        redis.stop()
