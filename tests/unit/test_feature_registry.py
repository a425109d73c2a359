"""How a feature plugs in without the core knowing it: slots, command hooks, keyed checks,
and a FEATURES list that fails loudly on a name without a module."""

from __future__ import annotations

import pytest

from aclmilter import conditions, registry
from aclmilter.errors import ExpansionFailed
from aclmilter.state import Connection, Recipient, Transaction
from tests.unit.fakes_ctx import FakeDns, make_ctx

# Registered once at import, like a feature module does (names unique to this test file).
_CONN = registry.slot("test_feature_conn", scope="connection", factory=list)
_RCPT = registry.slot("test_feature_rcpt", scope="recipient", factory=dict)
_CMD = registry.slot("test_feature_cmd", scope="command", factory=list)


def test_a_feature_typo_in_features_fails_the_import() -> None:
    with pytest.raises(ModuleNotFoundError):
        conditions.load_all(("core", "dnslist"))        # the module is dnslists


def test_every_feature_in_features_is_loaded() -> None:
    import sys
    assert [n for n in conditions.FEATURES if f"aclmilter.conditions.{n}" not in sys.modules] == []


def test_state_carries_no_feature_fields() -> None:
    for cls, gone in ((Connection, "ratelimit_cache"), (Recipient, "optin")):
        assert gone not in cls.__dataclass_fields__
    assert "proxy_required_failed" not in Connection().client.__dataclass_fields__
    assert {"slots"} <= set(Transaction.__dataclass_fields__)


def test_slots_are_per_scope_instance_and_made_on_first_use() -> None:
    ctx = make_ctx()
    assert _CONN.peek(ctx.conn) is None
    _CONN.of(ctx).append(1)
    assert _CONN.on(ctx.conn) == [1]
    assert _CONN.on(Connection()) == []                 # a new connection starts empty
    _RCPT.of(ctx)["x"] = 1
    assert _RCPT.on(Recipient("other@example.org")) == {}
    ctx.rcpt = None
    with pytest.raises(ExpansionFailed):
        _RCPT.of(ctx)


def test_command_slots_are_shared_with_nested_acls_only() -> None:
    ctx = make_ctx()
    _CMD.of(ctx).append("outer")
    assert _CMD.of(ctx.child()) == ["outer"]            # a nested `acl =` is the same command
    assert _CMD.of(make_ctx()) == []                    # the next command starts empty


def test_a_slot_name_is_declared_once() -> None:
    with pytest.raises(RuntimeError):
        registry.slot("test_feature_conn", scope="connection", factory=list)
    with pytest.raises(RuntimeError):
        registry.slot("test_feature_bad", scope="message", factory=list)


def test_keyed_checks_memoise_per_key_in_their_scope() -> None:
    """dnslists' DNS check (connection scope): each (name, type) is asked once per connection."""
    dns = FakeDns({("a.x", "A"): ["127.0.0.2"]})
    ctx = make_ctx(dns=dns)
    keys = [("a.x", "A"), ("b.x", "A"), ("a.x", "A")]
    assert [ctx.check("dnslist_dns", key=k) for k in keys] == [("127.0.0.2",), (), ("127.0.0.2",)]
    assert dns.queries == [("a.x", "A"), ("b.x", "A")]
    assert ctx.has_result("dnslist_dns") is False        # keyed results are not the unkeyed one
    other = make_ctx(dns=dns)                            # another connection asks again
    other.check("dnslist_dns", key=("a.x", "A"))
    assert len(dns.queries) == 3


def test_command_hooks_reject_unknown_commands() -> None:
    with pytest.raises(RuntimeError):
        registry.command_hook("test_feature_hook", commands=("quit",))(lambda ctx: None)


def test_the_session_does_not_import_a_feature() -> None:
    import ast
    from pathlib import Path
    import aclmilter.session as session
    tree = ast.parse(Path(session.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not [m for m in imported if m.startswith(("checks", "conditions", "clients"))], imported
