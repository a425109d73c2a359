# SPDX-License-Identifier: GPL-3.0-or-later
"""event_action end to end: Postfix -> aclmilter serve -> a Redis stream (XADD), and a
connection refused by a non-empty result at tcp:connect."""

from __future__ import annotations

import time

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import postfix_instance, simple_message, smtp_send, world_traversable_dir
from tests.harness.redis import RedisServer
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

# The docs' Redis-stream example, plus a refusal of IPv6 loopback clients at tcp:connect.
POLICY = r"""
settings:
  primary_hostname: mx.test.example
  redis_servers: ["{spec}"]
  event_action: >-
    ${{if and{{{{eq{{$event_name}}{{tcp:connect}}}}{{eq{{$sender_host_address}}{{::1}}}}}}
    {{refused}}
    {{${{lookup redis{{XADD aclmilter:events * event $event_name client $sender_host_address
    data ${{if eq{{$event_data}}{{}}{{-}}{{${{quote_redis:$event_data}}}}}}}}{{}}{{}}}}}}}}
acl:
  rcpt:
    - deny:
        local_parts: '^"?evil'
        message: "550 5.1.1 <$local_part@$domain>: no such user"
    - accept
"""


def _events(redis: RedisServer) -> list[dict[str, str]]:
    return [fields for _id, fields in redis.client().xrange("aclmilter:events")]


def _wait_events(redis: RedisServer, n: int, timeout: float = 20.0) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _events(redis)
        if len(found) >= n:
            return found
        time.sleep(0.1)
    return _events(redis)


def test_events_reach_a_redis_stream_and_refuse_at_connect(redis_module_server: RedisServer) -> None:
    redis = redis_module_server
    work = world_traversable_dir("events-e2e-")
    policy = work / "events.yaml"
    policy.write_text(POLICY.format(spec=redis.spec))
    redis.client().set("victim", "still here")
    with Sink() as sink, AclMilterd(policy, workdir=work) as milter:
        with postfix_instance(sink.port, milter=milter.postfix_spec) as pf:
            evil = '"evil DEL victim"@example.test'
            r = pf.send("alice@example.org", ["bob@example.test", evil],
                        simple_message("alice@example.org", "bob@example.test", subject="events"))
            assert r.accepted and r.rcpt[evil][0] == 550, r
            events = _wait_events(redis, 4)
            names = [e["event"] for e in events]
            # the harness's readiness probes of smtpd are connections too (connect events only);
            # their events may interleave with the real connection's, which run in another thread
            connects = names[:-2]
            assert set(connects) == {"tcp:connect", "smtp:connect"}, events
            assert connects.count("tcp:connect") == connects.count("smtp:connect"), events
            assert names[-2:] == ["msg:rcpt:reject", "msg:complete"], events
            events = events[-4:]
            assert all(e["client"] == "127.0.0.1" for e in events)
            assert events[2]["data"] == '550 5.1.1 <"evil DEL victim"@example.test>: no such user'
            assert events[3]["data"] == "accept"
            # network data was an argument, never a command: the key is untouched
            assert redis.client().get("victim") == "still here"

            # A non-empty result at tcp:connect refuses the connection (::1 here).
            r6 = smtp_send("::1", pf.port, "alice@example.org", ["bob@example.test"],
                           simple_message(), timeout=20)
            # Postfix answers a milter refusal at connect with a 554 banner, then hangs up (521)
            assert r6.banner[0] == 554 and r6.disconnected and not r6.accepted, r6
            before = len(names)
            assert len(_events(redis)) == before     # nothing was written for it
            assert len(sink.wait_for(1)) == 1

            # Redis down: events cannot be written, mail still flows (logged, never deferred).
            redis.stop()
            r = pf.send("alice@example.org", ["bob@example.test"], simple_message())
            assert r.accepted, r
            milter.wait_log(r"event_action for tcp:connect failed")
            assert milter.proc.poll() is None
