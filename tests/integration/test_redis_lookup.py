# SPDX-License-Identifier: GPL-3.0-or-later
"""`${lookup redis{...}}` against a real redis-server: replies, injection, failure, failover."""

from __future__ import annotations

import pytest

import aclmilter.conditions  # noqa: F401 - registers every feature
from aclmilter import expand, registry, state
from aclmilter.errors import SyntaxProblem, ExpansionFailed, LookupDefer
from aclmilter.services import Services
from tests.harness import procs
from tests.harness.redis import RedisServer, make_context, settings_for

pytestmark = pytest.mark.integration

FIND = registry.TABLES.lookups["redis"].find


@pytest.fixture
def server(redis_module_server: RedisServer) -> RedisServer:
    redis_module_server.client().flushdb()
    return redis_module_server


def _ctx(server: RedisServer, sender: str = "alice@example.org", stage: str = "mail"):
    settings = settings_for(server.spec)
    return make_context(settings, stage, txn=state.Transaction(sender=sender))


def _expand(ctx, text: str) -> str:
    return expand.parse(text).evaluate(ctx)


def test_get_set_smembers_hget_and_not_found(server):
    r = server.client()
    r.set("spam_host", "192.0.2.99")
    r.sadd("relay_from_ips", "192.168.0.0/24", "10.0.0.0/8")
    r.hset("example.com", "domain", "example.com")
    ctx = _ctx(server)
    assert FIND(ctx, None, "GET spam_host") == "192.0.2.99"
    assert sorted(FIND(ctx, None, "SMEMBERS relay_from_ips").split("\n")) == ["10.0.0.0/8", "192.168.0.0/24"]
    assert FIND(ctx, None, "HGET example.com domain") == "example.com"
    assert FIND(ctx, None, "SET SPAMMER yes") == "OK"
    assert r.get("SPAMMER") == "yes"
    assert FIND(ctx, None, "INCR counter") == "1"
    assert FIND(ctx, None, "GET missing") is None
    assert FIND(ctx, None, "SMEMBERS missing_set") is None
    assert FIND(ctx, None, "MGET spam_host SPAMMER") == "192.0.2.99\nyes"


def test_through_the_expansion_engine(server):
    r = server.client()
    r.set("alice@example.org", "vip")
    r.sadd("relay_from_ips", "192.168.0.0/24", "10.0.0.0/8")
    ctx = _ctx(server)
    assert _expand(ctx, "${lookup redis{GET ${quote_redis:$sender_address}}{<$value>}{none}}") == "<vip>"
    assert _expand(ctx, "${lookup redis{GET nobody}{<$value>}{none}}") == "none"
    assert _expand(ctx, "${if eq{${lookup redis{SET SPAMMER x}}}{OK}{set}{unset}}") == "set"
    members = _expand(ctx, "${lookup redis{SMEMBERS relay_from_ips}}")
    assert sorted(members.split("\n")) == ["10.0.0.0/8", "192.168.0.0/24"]


HOSTILE = [
    "evil FLUSHALL",
    "a b c d e",
    "x\r\nFLUSHALL\r\n",
    "x\r\n*3\r\n$3\r\nDEL\r\n$6\r\nvictim\r\n",
    "*1\r\n$8\r\nFLUSHALL\r\n",
    "\"quoted\" 'single' \\back\\slash",
    "victim",
    "\nDEL victim",
    "tab\there",
]


@pytest.mark.parametrize("sender", HOSTILE)
def test_injection_attempts_leave_redis_untouched(server, sender):
    r = server.client()
    r.set("victim", "precious")
    r.sadd("set", "m")
    before = sorted(r.keys("*"))
    ctx = _ctx(server, sender=sender)
    # Quoted (the documented way): one argument, read-only command, nothing changes.
    assert _expand(ctx, "${lookup redis{GET ${quote_redis:$sender_address}}{found}{missing}}") in ("found", "missing")
    assert _expand(ctx, "${lookup redis{SISMEMBER set ${quote_redis:$sender_address}}}") == "0"
    # Unquoted: may split into extra arguments (as in Exim) -> wrong arity, an error reply,
    # which defers; it can never become a second command.
    try:
        _expand(ctx, "${lookup redis{GET $sender_address}{found}{missing}}")
    except LookupDefer:
        pass
    assert sorted(r.keys("*")) == before
    assert r.get("victim") == "precious" and r.dbsize() == 2
    # A quoted write stores the hostile text as exactly one value under the intended key.
    _expand(ctx, "${lookup redis{SET last_sender ${quote_redis:$sender_address}}}")
    assert r.get("last_sender") == sender
    assert r.dbsize() == 3 and r.get("victim") == "precious"


def test_network_data_cannot_choose_the_command(server):
    r = server.client()
    r.set("victim", "precious")
    for cmd in ("FLUSHALL", "DEL victim", "CONFIG SET dir /tmp", "EVAL return 1 0", "SCRIPT FLUSH"):
        ctx = _ctx(server, sender=cmd)
        ctx.set_var("acl_m_cmd", cmd)
        # refused when the policy is loaded: the command word must be literal policy text
        with pytest.raises(SyntaxProblem, match="command word"):
            _expand(ctx, "${lookup redis{$acl_m_cmd}}")
        # and at run time, a command outside the data allow-list is refused even if literal
        with pytest.raises(ExpansionFailed):
            _expand(ctx, "${lookup redis{" + cmd + "}}")
    assert r.get("victim") == "precious" and r.dbsize() == 1


def test_error_reply_and_missing_configuration_defer(server):
    r = server.client()
    r.sadd("aset", "x")
    ctx = _ctx(server)
    with pytest.raises(LookupDefer):
        FIND(ctx, None, "GET aset")          # WRONGTYPE error reply
    bare = make_context(settings_for(None), "mail", txn=state.Transaction())
    with pytest.raises(LookupDefer):
        FIND(bare, None, "GET k")


def test_failover_to_the_next_server(server):
    dead = f"127.0.0.1:{procs.free_port()}/0/"
    server.client().set("k", "from-second")
    ctx = make_context(settings_for([dead, server.spec]), "mail", txn=state.Transaction())
    assert FIND(ctx, None, "GET k") == "from-second"


def test_database_number_and_password_are_used(tmp_path):
    srv = RedisServer(tmp_path / "pw")
    srv.start()
    try:
        srv.client().config_set("requirepass", "s3cret")
        import redis
        admin = redis.Redis(host="127.0.0.1", port=srv.port, password="s3cret", db=5, decode_responses=True)
        admin.set("k", "db5")
        ctx = make_context(settings_for(f"127.0.0.1:{srv.port}/5/s3cret"), "mail", txn=state.Transaction())
        assert FIND(ctx, None, "GET k") == "db5"
        wrong = make_context(settings_for(f"127.0.0.1:{srv.port}/5/nope"), "mail", txn=state.Transaction())
        with pytest.raises(LookupDefer):
            FIND(wrong, None, "GET k")
    finally:
        srv.stop()


def test_unix_socket_server(tmp_path):
    binary = procs.require_binary("redis-server")
    sock = tmp_path / "r.sock"
    pidfile = tmp_path / "r.pid"
    cmd = [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
           "--dir", str(tmp_path), "--pidfile", str(pidfile)]
    with procs.running(cmd, tmp_path / "r.log"):
        procs.wait_path(sock)
        ctx = make_context(settings_for([f"{sock}/0/"]), "mail", txn=state.Transaction())
        assert FIND(ctx, None, "SET via socket") == "OK"
        assert FIND(ctx, None, "GET via") == "socket"


def test_redis_killed_mid_run_defers_then_recovers(tmp_path):
    srv = RedisServer(tmp_path / "kill").start()
    try:
        settings = settings_for(srv.spec)
        svc = Services(settings)
        ctx = make_context(settings, "mail", services=svc, txn=state.Transaction())
        assert FIND(ctx, None, "SET k v") == "OK"
        srv.stop()
        for _ in range(3):
            with pytest.raises(LookupDefer):
                FIND(ctx, None, "GET k")
        srv.start()                                   # same port, empty (no persistence)
        assert FIND(ctx, None, "GET k") is None       # the same pooled client reconnected
        assert FIND(ctx, None, "SET k again") == "OK"
    finally:
        srv.stop()
        svc.close()
