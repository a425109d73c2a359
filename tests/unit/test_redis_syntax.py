# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis server specs, query splitting, quoting and reply flattening (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from tests.strategies import utf8_characters

from aclmilter.clients import redis as rc
from aclmilter.errors import SyntaxProblem


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1/10/", rc.ServerSpec("127.0.0.1", 6379, "", 10, None)),
    ("127.0.0.1//password", rc.ServerSpec("127.0.0.1", 6379, "", 0, "password")),
    ("127.0.0.1//", rc.ServerSpec("127.0.0.1", 6379, "", 0, None)),
    ("redis.example.net:6380/2/pw", rc.ServerSpec("redis.example.net", 6380, "", 2, "pw")),
    ("[::1]:6390//", rc.ServerSpec("::1", 6390, "", 0, None)),
    ("/run/redis/redis.sock/3/secret", rc.ServerSpec("", 6379, "/run/redis/redis.sock", 3, "secret")),
    ("localhost(/run/redis.sock)/1/", rc.ServerSpec("", 6379, "/run/redis.sock", 1, None)),
    ("127.0.0.1", rc.ServerSpec("127.0.0.1", 6379, "", 0, None)),
])
def test_server_specs(text, expected):
    assert rc.parse_server(text) == expected


@pytest.mark.parametrize("text", ["", "127.0.0.1/x/", "host:99999//", "a b//", "/10/", "ho\nst//", "[::1//"])
def test_bad_server_specs(text):
    with pytest.raises(SyntaxProblem):
        rc.parse_server(text)


def test_server_lists_yaml_and_exim_colon_forms():
    yaml_form = rc.parse_servers(["127.0.0.1:6390/1/", "[::1]:6391//pw"])
    colon_form = rc.parse_servers("127.0.0.1::6390/1/ : [::::1]::6391//pw")
    sep_form = rc.parse_servers("<; 127.0.0.1:6390/1/ ; [::1]:6391//pw")
    assert yaml_form == colon_form == sep_form
    assert [s.port for s in yaml_form] == [6390, 6391]
    assert rc.parse_servers(None) == () == rc.parse_servers([])
    with pytest.raises(SyntaxProblem):
        rc.parse_servers({"host": "x"})
    with pytest.raises(SyntaxProblem, match="looks like a port"):
        rc.parse_servers("127.0.0.1:6390/1/")      # colon list: needs host::port


def test_password_never_in_label():
    assert "secret" not in rc.parse_server("127.0.0.1/0/secret").label()


@pytest.mark.parametrize("query, argv", [
    ("GET key", ["GET", "key"]),
    ("  SMEMBERS   relay_from_ips  ", ["SMEMBERS", "relay_from_ips"]),
    (r"SET a\ b c", ["SET", "a b", "c"]),
    (r"GET a\\b", ["GET", "a\\b"]),
    ("GET a\tb\nc", ["GET", "a", "b", "c"]),
    ("GET x\\", ["GET", "x"]),
    ("", []),
])
def test_split_like_exim(query, argv):
    assert rc.split_query(query) == argv


def test_split_stops_at_32_arguments():
    assert len(rc.split_query("MGET " + " ".join(f"k{i}" for i in range(50)))) == 32


@settings(max_examples=300, deadline=None)
@given(hs.text(alphabet=utf8_characters("\0"), max_size=40))
def test_quoted_text_stays_one_argument(value):
    argv = rc.split_query("SET k " + rc.quote(value))
    if value == "":
        assert argv == ["SET", "k"]
    else:
        assert argv == ["SET", "k", value]


@pytest.mark.parametrize("reply, text", [
    (None, None),
    (b"value", "value"),
    (b"OK", "OK"),
    (7, "7"),
    (0, "0"),
    ([b"10.0.0.0/8", b"192.168.0.0/24"], "10.0.0.0/8\n192.168.0.0/24"),
    ([b"a", 3, [b"b", b"c", [b"deep"]], None, b"d"], "a\n3\nb\nc\nd"),
    ([], None),
])
def test_reply_flattening(reply, text):
    assert rc.flatten_reply(reply) == text


def test_lookup_refuses_commands_outside_the_allow_list():
    from aclmilter.conditions import redis as redis_feature
    from aclmilter.errors import ExpansionFailed
    assert redis_feature.command_argv("get k") == ["get", "k"]
    for bad in ("FLUSHALL", "CONFIG SET dir /tmp", "EVAL x 0", "DEL k", "MULTI", "KEYS *",
                "\\FLUSHALL", ""):
        with pytest.raises(ExpansionFailed):
            redis_feature.command_argv(bad)
    assert redis_feature.static_command_word("GET ${quote_redis:$sender_address}") == "GET"
    assert redis_feature.static_command_word("$acl_c_cmd key") is None
