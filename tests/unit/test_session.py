"""The sans-I/O Session: scopes, resets, PROXY identity, internal errors, spooling, edits order."""

from __future__ import annotations

from pathlib import Path

import pytest

from aclmilter import registry
from aclmilter.outcome import Result
from aclmilter.runtime import Runtime
from aclmilter.session import Action, Session
from aclmilter.stages import ALL


@registry.condition("test_explode", ALL)
def _explode(ctx: object, value: str) -> Result:
    """Test-only: raises, to prove an exception never escapes the session."""
    raise RuntimeError("boom")


def make_session(tmp_path: Path, policy: str, **kw: object) -> Session:
    path = tmp_path / "p.yaml"
    path.write_text(policy)
    rt = Runtime(path, monitor=False)
    rt.load()
    return Session(rt, **kw)  # type: ignore[arg-type]


COUNTING = """
acl:
  connect:
    - accept: {set: {acl_c_conn: "$sender_host_address"}}
  mail:
    - accept: {set: {acl_m_mail: "from-$sender_address"}}
  rcpt:
    - deny: {condition: "${if eq{$acl_m_mail}{}}", message: "550 5.7.1 acl_m lost"}
    - deny: {condition: "${if eq{$acl_c_conn}{}}", message: "550 5.7.1 acl_c lost"}
    - accept
"""


def test_two_transactions_and_abort_reset_only_message_scope(tmp_path: Path) -> None:
    s = make_session(tmp_path, COUNTING)
    assert s.connect("[192.0.2.1]", "inet", "192.0.2.1", 4000, {}).action is Action.CONTINUE
    s.helo("client.example", {})
    s.mail("<a@example.com>", [], {})
    assert s.txn.acl_m == {"acl_m_mail": "from-a@example.com"}
    assert s.rcpt("<x@example.org>", [], {}).action is Action.CONTINUE
    s.abort()
    assert s.txn is None
    assert s.conn.acl_c == {"acl_c_conn": "192.0.2.1"}
    s.mail("<b@example.com>", [], {})
    assert s.txn.acl_m == {"acl_m_mail": "from-b@example.com"}
    assert s.rcpt("<y@example.org>", [], {}).action is Action.CONTINUE
    # a second CONNECT (Postfix after XCLIENT) starts a fresh connection scope
    s.connect("[198.51.100.9]", "inet", "198.51.100.9", 4001, {})
    assert s.conn.acl_c == {"acl_c_conn": "198.51.100.9"}
    assert s.txn is None


def test_ipv6_prefix_and_bracket_hostname(tmp_path: Path) -> None:
    s = make_session(tmp_path, "acl: {}\n")
    s.connect("[2001:db8::7]", "inet6", "2001:db8::7", 4712,
              {"{client_addr}": "IPv6:2001:db8::7", "{client_name}": "unknown", "{daemon_addr}": "::1",
               "{daemon_port}": "2525"})
    assert s.conn.client.address == "2001:db8::7"
    assert s.conn.client.name == ""
    assert s.conn.client.local_address == "::1"


PROXY = """
settings:
  proxy_listeners: [{daemon_name: proxied, proxy_address: 192.0.2.2, proxy_port: "40000"}]
  proxy_required_hosts: "<; 192.0.2.0/28 ; 2001:db8:ffff::/48"
acl:
  connect:
    - warn:
        condition: "${if and{ {bool{$proxy_session}} {eq{$proxy_host_address}{}} } }"
        log_message: "Failed required proxy protocol negotiation from [$sender_host_address]"
    - warn:
        logwrite: "target=$proxy_target_address:$proxy_target_port host=$proxy_host_address:$proxy_host_port session=$proxy_session"
    - accept
"""


def test_proxied_session_variables(tmp_path: Path) -> None:
    s = make_session(tmp_path, PROXY, trace=True)
    r = s.connect("[203.0.113.7]", "inet", "203.0.113.7", 4711,
                  {"{client_addr}": "203.0.113.7", "{client_port}": "4711", "{daemon_name}": "proxied",
                   "{daemon_addr}": "198.51.100.25", "{daemon_port}": "25"})
    assert r.action is Action.CONTINUE
    assert s.records[0].variables["proxy_session"] == "yes"
    assert s.log_record("accept")["prx"] == "[192.0.2.2]:40000"
    logs = s.records[0].log_lines
    assert "target=198.51.100.25:25 host=192.0.2.2:40000 session=yes" in logs
    assert s.records[0].variables["sender_host_address"] == "203.0.113.7"


def test_proxy_required_host_direct_is_refused_but_logged(tmp_path: Path) -> None:
    s = make_session(tmp_path, PROXY, trace=True)
    r = s.connect("[192.0.2.5]", "inet", "192.0.2.5", 5000,
                  {"{client_addr}": "192.0.2.5", "{daemon_name}": "mx", "{daemon_port}": "25"})
    assert r.action is Action.CONTINUE      # refused from HELO on (see Session.connect)
    assert any("Failed required proxy protocol negotiation from [192.0.2.5]" in x for x in s.records[0].log_lines)
    for resp in (s.helo("x", {}), s.mail("<a@b.example>", [], {}), s.rcpt("<c@d.example>", [], {})):
        assert resp.action is Action.REJECT
        assert resp.reply.text() == "503 5.7.0 Command refused, required Proxy negotiation failed"


def test_proxy_required_host_through_proxy_listener_is_accepted(tmp_path: Path) -> None:
    s = make_session(tmp_path, PROXY)
    r = s.connect("[192.0.2.5]", "inet", "192.0.2.5", 5000,
                  {"{client_addr}": "192.0.2.5", "{daemon_name}": "proxied", "{daemon_port}": "25"})
    assert r.action is Action.CONTINUE
    assert s.helo("x", {}).action is Action.CONTINUE


@pytest.mark.parametrize("mode,action", [("tempfail", Action.TEMPFAIL), ("accept", Action.CONTINUE),
                                         ("reject", Action.REJECT)])
def test_internal_error_gives_configured_outcome_and_session_goes_on(tmp_path: Path, mode: str,
                                                                     action: Action) -> None:
    s = make_session(tmp_path, f"settings: {{on_internal_error: {mode}}}\nacl:\n  mail:\n    - deny: {{test_explode: x}}\n")
    s.connect("[192.0.2.1]", "inet", "192.0.2.1", 1, {})
    # an exception inside a condition is an ERROR of the ACL (451), whatever the setting
    r = s.mail("<a@example.com>", [], {})
    assert r.action is Action.TEMPFAIL and r.reply.code == 451
    # an exception in the session itself (here: corrupted transaction state) gives on_internal_error
    s.txn = object()  # type: ignore[assignment]
    res = s.eom({})
    assert res.response.action is action
    # and the next connection works
    s.connect("[192.0.2.2]", "inet", "192.0.2.2", 1, {})
    assert s.helo("ok", {}).action is Action.CONTINUE


def test_body_spools_to_file_over_threshold(tmp_path: Path) -> None:
    s = make_session(tmp_path, "settings: {body_spool_threshold: 1000}\nacl: {}\n")
    s.connect("[192.0.2.1]", "inet", "192.0.2.1", 1, {})
    s.mail("<a@example.com>", [], {})
    s.rcpt("<b@example.org>", [], {})
    s.data({})
    chunk = b"x" * 600 + b"\r\n"
    for _ in range(5):
        s.body(chunk)
    assert s.txn.body.spooled
    assert s.txn.body.read() == chunk * 5
    assert s.eom({}).response.action is Action.CONTINUE
    s.close()                           # closes the spool file (an open one is a ResourceWarning)


def test_header_removals_highest_index_first_and_forged_crlf_refused(tmp_path: Path) -> None:
    pol = """
acl:
  data:
    - warn: {remove_header: "<; X-Spam ; ^Received:.*evil"}
    - warn: {add_header: "X-Ok: $h_Subject:"}
    - accept
"""
    s = make_session(tmp_path, pol)
    s.connect("[192.0.2.1]", "inet", "192.0.2.1", 1, {})
    s.mail("<a@example.com>", [], {})
    s.rcpt("<b@example.org>", [], {})
    for name, value in [("Received", "from good"), ("X-Spam", "1"), ("Received", "from evil"),
                        ("X-Spam", "2"), ("Subject", "hi\r\nInjected: yes")]:
        s.header(name, value)
    res = s.eom({})
    assert res.header_changes == [("Received", 2, ""), ("X-Spam", 2, ""), ("X-Spam", 1, "")]
    added = res.edits.header_adds
    assert len(added) == 1 and "\r" not in added[0].value and "\nInjected" not in added[0].value.replace("\n ", "")


def test_engine_and_session_run_without_any_milter_import() -> None:
    """The sans-I/O core never imports pymilter (its C module `milter` or `Milter`)."""
    import subprocess
    import sys
    code = ("import sys, aclmilter.dryrun, aclmilter.engine, aclmilter.session, aclmilter.cli; "
            "print(sorted(m for m in ('milter', 'Milter') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_held_refusal_refuses_at_eom_without_running_the_data_acl(tmp_path: Path) -> None:
    from aclmilter.actions import Reply
    from aclmilter.session import HeldRefusal, Response
    s = make_session(tmp_path, "acl:\n  data:\n    - accept: {add_header: 'X-Data-Acl: ran'}\n")
    s.connect("[192.0.2.1]", "inet", "192.0.2.1", 4000, {})
    s.helo("client.example", {})
    s.mail("<a@example.com>", [], {})
    s.rcpt("<x@example.org>", [], {})
    held = HeldRefusal("mail", Response(Action.TEMPFAIL, Reply(451, "4.3.0", ("try later",))), "p.yaml:3")
    result = s.eom({}, held)
    assert result.response is held.response
    assert not result.edits.header_adds                      # the data ACL never ran
    assert result.summary["decision"] == "tempfail_at_mail" and result.summary["where"] == "p.yaml:3"
    s.mail("<b@example.com>", [], {})                        # the next message is judged afresh
    s.rcpt("<y@example.org>", [], {})
    after = s.eom({})
    assert after.response.action is Action.CONTINUE and after.summary["decision"] == "accept"
    assert [h.name for h in after.edits.header_adds] == ["X-Data-Acl"]


def test_refuse_last_recipient_takes_it_out_of_the_message_and_the_log(tmp_path: Path) -> None:
    s = make_session(tmp_path, "acl: {}\n")
    s.connect("[192.0.2.1]", "inet", "192.0.2.1", 4000, {})
    s.mail("<a@example.com>", [], {})
    s.rcpt("<x@example.org>", [], {})
    s.rcpt("<y@example.org>", [], {})
    s.refuse_last_recipient(Action.TEMPFAIL)
    s.refuse_last_recipient(Action.TEMPFAIL)                 # only once per recipient
    assert s.log_record()["recipients"] == ["x@example.org"]
    assert s.txn.rcpt_defer_count == 1 and s.txn.rcpt_fail_count == 0
