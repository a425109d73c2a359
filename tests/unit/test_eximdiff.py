"""`aclmilter check` warnings where a milter cannot do what Exim does (policy/eximdiff.py)."""

from __future__ import annotations

from aclmilter.policy.eximdiff import warnings
from aclmilter.policy.loader import load_text

POLICY = """\
hostlist: {bad: "/nonexistent/aclmilter/hosts"}
acl:
  connect:
    - deny: {hosts: 192.0.2.0/24, message: go away}
    - accept
  helo:
    - defer: {condition: "${if eq{$sender_helo_name}{x}}"}
    - accept
  rcpt:
    - accept: {domains: "lsearch;/nonexistent/aclmilter/domains", message: "250 welcome"}
    - drop: {condition: "${lookup{$local_part}lsearch{/nonexistent/aclmilter/users}{no}{yes}}"}
    - accept: {hosts: "192.0.2.0/24 : /nonexistent/aclmilter/hostfile"}
"""


def test_every_difference_is_named_with_its_statement() -> None:
    out = warnings(load_text(POLICY, "p.yaml"))
    text = "\n".join(out)
    assert "p.yaml:4: warning: deny in the connect ACL" in text and "554" in text
    assert "p.yaml:7: warning: defer in the helo ACL" in text
    assert "p.yaml:10: warning: message on accept" in text
    assert "p.yaml:11: warning: drop: under Postfix the reply code is 521" in text
    for path in ("hosts", "domains", "users", "hostfile"):
        assert f"/nonexistent/aclmilter/{path} does not exist" in text, text
    assert len(out) == 8, text


def test_clean_policy_has_no_warnings(tmp_path) -> None:
    f = tmp_path / "users"
    f.write_text("a: 1\n")
    policy = load_text("acl:\n  rcpt:\n    - deny: {condition: '${lookup{$local_part}lsearch{%s}{no}{yes}}'}\n"
                       "    - accept: {hosts: '<; 192.0.2.0/24 ; 2001:db8::1'}\n" % f, "q.yaml")
    assert warnings(policy) == []


def test_ipv6_in_colon_list_is_refused_with_the_fix() -> None:
    import pytest
    from aclmilter.errors import PolicyErrors
    with pytest.raises(PolicyErrors, match="start the list with '<; '"):
        load_text("acl:\n  rcpt:\n    - accept: {hosts: '192.0.2.0/24 : 2001:db8::/32'}\n", "v6.yaml")
    with pytest.raises(PolicyErrors, match="no mysql lookups"):
        load_text("acl:\n  rcpt:\n    - accept: {condition: '${lookup mysql{select 1}}'}\n", "my.yaml")
