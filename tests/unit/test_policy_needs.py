"""What a policy needs from the MTA (policy.needs) and the protocol bits asked for (negotiation)."""

from __future__ import annotations

from pathlib import Path

import milter
import pytest

from aclmilter.policy.loader import load_file, load_text
from aclmilter.policy.needs import EVERYTHING, analyse
from aclmilter.service import negotiation

ROOT = Path(__file__).resolve().parent.parent.parent


def needs(text: str):
    return analyse(load_text(text, "p.yaml"))


def test_default_policy_refuses_only_at_end_of_data_so_no_earlier_step_is_waited_for() -> None:
    # its HELO and MAIL ACLs are warns and accepts ending in a plain accept; its DATA ACL
    # (a From without one author domain) needs the headers
    n = analyse(load_file(ROOT / "policies" / "default.yaml"))
    assert n.replies == frozenset()
    assert n.content_reasons == ("a data ACL",) and not n.predata
    assert n.acl_steps == frozenset({"helo", "mail"})           # where the session has work
    assert n.work_at("mail") and not n.work_at("predata") and not n.work_at("connect")


@pytest.mark.parametrize("acl, why", [
    ("- deny: {senders: a@example.org}\n    - accept", "a refusing verb"),
    ("- defer: {senders: a@example.org}\n    - accept", "a refusing verb"),
    ("- drop: {senders: a@example.org}\n    - accept", "a refusing verb"),
    ("- discard: {senders: a@example.org}\n    - accept", "a refusing verb"),
    ("- require: {senders: a@example.org}\n    - accept", "a refusing verb"),
    ("- warn: {senders: a@example.org}", "runs off its end: implicit deny"),
    ("- accept: {senders: a@example.org}", "the last accept has a condition"),
    ("- accept: {senders: a@example.org, endpass: null, hosts: 192.0.2.1}\n    - accept",
     "a condition failing after endpass denies"),
    ("- accept: {acl: inner}\n    - accept", "a nested ACL"),
    ("- warn: {acl: inner}\n    - accept", "a nested ACL"),
    ("- warn: {delay: 1s}\n    - accept", "delay is about when the client is answered"),
    ("[]", "an empty ACL denies"),
])
def test_a_step_whose_acl_can_refuse_is_answered(acl: str, why: str) -> None:
    n = needs(f"acl:\n  mail:\n    {acl}\n  inner:\n    - accept\n")
    assert n.replies == {"mail"}, why


def test_warns_and_conditional_accepts_before_a_plain_accept_are_not_waited_for() -> None:
    n = needs("acl:\n  helo:\n    - warn: {hosts: 192.0.2.1, log_message: x}\n    - accept\n"
              "  mail:\n    - accept: {senders: a@example.org, add_header: \":at_start:X-A: 1\"}\n"
              "    - warn: {spf: fail}\n    - accept: {set: {acl_m_x: y}}\n")
    assert n.replies == frozenset()


def test_rcpt_is_answered_when_a_condition_outside_warn_could_defer_one_recipient() -> None:
    assert needs("acl:\n  rcpt:\n    - warn: {domains: example.org}\n    - accept\n").replies == frozenset()
    n = needs("acl:\n  rcpt:\n    - accept: {domains: example.org}\n    - accept\n")
    assert n.replies == {"rcpt"}


@pytest.mark.parametrize("policy, reason", [
    ("acl:\n  data:\n    - accept\n", "a data ACL"),
    ("acl:\n  deliver:\n    - accept\n", "a deliver ACL"),
    ("settings:\n  authserv_id: mx.example\nacl: {}\n", "settings.authserv_id"),
    ("acl:\n  rcpt:\n    - warn:\n        remove_header: X-Spam\n    - accept\n", "remove_header at p.yaml:4"),
    ("acl:\n  mail:\n    - accept:\n        add_header: \":after_received:X-A: 1\"\n",
     "depends on the message's headers at p.yaml:4"),
    ("acl:\n  mail:\n    - accept:\n        add_header: \":at_start_rfc:X-A: 1\"\n", "p.yaml:4"),
    # the position is read after expansion: text that starts with an expansion could be any
    ("acl:\n  mail:\n    - accept:\n        set: {acl_m_h: x}\n        add_header: \"$acl_m_h\"\n",
     "p.yaml:5"),
    ("acl:\n  rcpt:\n    - warn:\n        message: \":after_received:X-B: 2\"\n    - accept\n", "p.yaml:4"),
])
def test_content_needed_and_why(policy: str, reason: str) -> None:
    n = needs(policy)
    assert n.content
    assert any(reason in r for r in n.content_reasons), n.content_reasons


@pytest.mark.parametrize("text", [":at_start:X-A: 1", ":at_end:X-A: 1", "X-A: $sender_address"])
def test_top_or_bottom_headers_need_no_content(text: str) -> None:
    n = needs(f"acl:\n  rcpt:\n    - accept:\n        add_header: \"{text}\"\n")
    assert not n.content


def test_message_of_a_deny_is_a_reply_not_a_header() -> None:
    n = needs("acl:\n  rcpt:\n    - deny:\n        message: \"$acl_m_x\"\n")
    assert not n.content


def test_named_acls_are_looked_into() -> None:
    n = needs("acl:\n  rcpt:\n    - accept: {acl: strip}\n  strip:\n    - warn: {remove_header: X-Spam}\n")
    assert n.content and "remove_header" in n.content_reasons[0]


def test_proxy_required_hosts_makes_every_command_answer() -> None:
    n = needs("settings:\n  proxy_required_hosts: 192.0.2.0/24\nacl: {}\n")
    assert n.replies == {"helo", "mail", "rcpt", "predata"} and n.predata


def test_summary_names_steps_and_reasons() -> None:
    text = needs("acl:\n  predata:\n    - deny: {senders: a@example.org}\n    - accept\n"
                 "  data:\n    - accept\n").summary()
    assert "answers needed at: predata" in text and "yes (a data ACL)" in text


REFUSING_AT_HELO_AND_MAIL = ("acl:\n  helo:\n    - deny: {condition: \"${if eq{$sender_helo_name}{x}}\"}\n"
                             "    - accept\n  mail:\n    - require: {spf: pass}\n    - accept\n")


def test_default_policy_leaves_every_step_before_eom_unanswered_on_a_unix_socket() -> None:
    bits = negotiation.wanted(analyse(load_file(ROOT / "policies" / "default.yaml")), over_tcp=False)
    assert bits & milter.P_NODATA
    for step_bit in negotiation.NO_REPLY_BIT.values():
        assert bits & step_bit
    bits = negotiation.wanted(analyse(load_file(ROOT / "policies" / "default.yaml")), over_tcp=True)
    assert not bits & (milter.P_NR_DATA | milter.P_NODATA)      # see the TCP test below


def test_unix_socket_skips_and_leaves_unanswered_what_the_policy_cannot_use() -> None:
    bits = negotiation.wanted(needs(REFUSING_AT_HELO_AND_MAIL), over_tcp=False)
    for skipped in (milter.P_NOHDRS, milter.P_NOBODY, milter.P_NODATA, milter.P_NOEOH, milter.P_NOUNKNOWN):
        assert bits & skipped
    assert bits & milter.P_NR_CONN and bits & milter.P_NR_RCPT
    assert not bits & milter.P_NR_HELO and not bits & milter.P_NR_MAIL    # the policy answers there
    assert not bits & (milter.P_NOCONNECT | milter.P_NOHELO | milter.P_NOMAIL | milter.P_NORCPT)


def test_tcp_keeps_data_answered_but_leaves_other_unused_steps_unanswered() -> None:
    bits = negotiation.wanted(needs(REFUSING_AT_HELO_AND_MAIL), over_tcp=True)
    assert bits & milter.P_NOHDRS and bits & milter.P_NOBODY
    # DATA is the last step smtpd writes before handing the connection to cleanup: it must be
    # sent and answered, or cleanup's end of message waits for our delayed ACK
    assert not bits & milter.P_NODATA and not bits & milter.P_NR_DATA
    assert bits & milter.P_NR_CONN and bits & milter.P_NR_RCPT
    assert not bits & milter.P_NR_HELO and not bits & milter.P_NR_MAIL    # the policy answers there


def test_a_predata_acl_is_answered_on_both_socket_kinds() -> None:
    n = needs("acl:\n  predata:\n    - deny:\n        message: no\n")
    for over_tcp in (False, True):
        bits = negotiation.wanted(n, over_tcp=over_tcp)
        assert not bits & (milter.P_NODATA | milter.P_NR_DATA)
        assert bits & milter.P_NR_MAIL and bits & milter.P_NR_HELO


def test_unknown_needs_ask_for_everything() -> None:
    bits = negotiation.wanted(EVERYTHING, over_tcp=False)
    assert not bits & (milter.P_NOHDRS | milter.P_NOBODY | milter.P_NODATA)
    assert not any(bits & nr for nr in negotiation.NO_REPLY_BIT.values())
    assert "P_NOEOH" in negotiation.describe(bits)


def test_a_control_that_makes_eom_read_the_message_needs_content() -> None:
    import aclmilter.conditions  # noqa: F401 - registers bmi_run
    n = needs("acl:\n  rcpt:\n    - accept:\n        control: bmi_run\n")
    assert n.content and "control = bmi_run at p.yaml:4" in n.content_reasons
    assert not needs("acl:\n  rcpt:\n    - accept:\n        control: no_multiline_responses\n").content
    # computed at run time: could be bmi_run
    assert needs("acl:\n  rcpt:\n    - accept:\n        control: \"${if eq{1}{1}{bmi_run}}\"\n").content


def _hook_names(text: str) -> dict[str, list[str]]:
    policy = load_text(text, "p.yaml")
    return {phase: [h.name for h in policy.eom_hooks(phase)] for phase in ("after_data", "after_deliver")}


def test_end_of_message_hooks_that_cannot_act_under_a_policy_are_not_run() -> None:
    """The default policy sets nothing an end-of-message hook acts on: no hook is called."""
    policy = load_file(ROOT / "policies" / "default.yaml")
    assert policy.eom_hooks("after_data") == () and policy.eom_hooks("after_deliver") == ()
    hooks = _hook_names("settings:\n  authserv_id: mx.example\nacl:\n  mail:\n    - accept\n")
    assert hooks == {"after_data": ["authresults"], "after_deliver": []}


@pytest.mark.parametrize("control, hook", [
    ("dmarc_enable_forensic", "dmarc_forensic"),
    ("dmarc_forensic_enable", "dmarc_forensic"),        # an alias counts as the control
    ("bmi_run", "bmi_headers"),
])
def test_a_control_anywhere_in_the_policy_turns_its_hook_on(control: str, hook: str) -> None:
    hooks = _hook_names(f"acl:\n  rcpt:\n    - warn: {{control: {control}}}\n    - accept\n")
    assert hook in hooks["after_data"] + hooks["after_deliver"]
    assert len(hooks["after_data"] + hooks["after_deliver"]) == 1


def test_a_control_computed_at_run_time_may_be_any_so_every_control_hook_runs() -> None:
    hooks = _hook_names("acl:\n  rcpt:\n    - warn: {control: \"${if eq{1}{1}{bmi_run}{}}\"}\n    - accept\n")
    assert "bmi_headers" in hooks["after_deliver"] and "dmarc_forensic" in hooks["after_data"]
