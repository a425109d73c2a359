# SPDX-License-Identifier: GPL-3.0-or-later
"""SPF result lists, texts and A-R fragments without DNS."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as hs

import aclmilter.conditions  # noqa: F401
from aclmilter.checks.spf import (Identity, SpfOutcome, SpfResult, _with_texts, authres_fragment,
                                  received_value)
from aclmilter.conditions.spf import list_matches, parse_guess_record, parse_result_list
from aclmilter.errors import PolicyErrors, SyntaxProblem
from aclmilter.policy.loader import load_text

WORDS = [r.value for r in SpfResult]


def test_parse_lists():
    assert parse_result_list("pass") == ((False, "pass"),)
    assert parse_result_list(" fail : !Neutral :* ") == ((False, "fail"), (True, "neutral"), (False, "*"))
    # the names decide (one seed version swaps the two descriptions)
    assert parse_result_list("err_perm:err_temp") == ((False, "permerror"), (False, "temperror"))


@pytest.mark.parametrize(("text", "offset"), [("pass:bogus", 5), ("passed", 0), ("!", 0)])
def test_unknown_words_are_refused(text, offset):
    with pytest.raises(SyntaxProblem) as info:
        parse_result_list(text)
    assert info.value.offset == offset


def test_empty_list_is_refused():
    with pytest.raises(SyntaxProblem):
        parse_result_list(" : ")


item = hs.tuples(hs.booleans(), hs.sampled_from(WORDS + ["*", "invalid"]))


@given(hs.lists(item, min_size=1, max_size=6), hs.sampled_from(list(SpfResult)))
def test_first_matching_item_semantics(items, result):
    # an item matches when (word equals the result) differs from (item is negated)
    expected = any((w == "*" or w == result.value) != neg for neg, w in items)
    assert list_matches(tuple(items), result) is expected


def test_guess_record_setting():
    assert parse_guess_record("v=spf1 a/24 ?all") == "v=spf1 a/24 ?all"
    for bad in ("a/24 ?all", "v=spf1 a\n-all", "v=spf1 ä"):
        with pytest.raises(SyntaxProblem):
            parse_guess_record(bad)


def test_loader_refuses_spf_outside_message_stages_and_bad_words():
    with pytest.raises(PolicyErrors) as info:
        load_text("acl:\n  helo:\n    - deny: {spf: fail}\n  mail:\n    - deny: {spf_guess: \"fail:nope\"}\n",
                  "t.yaml")
    text = str(info.value)
    assert "t.yaml:3:" in text and "not allowed in the helo ACL" in text
    assert "t.yaml:5:" in text and "unknown SPF result 'nope'" in text


def outcome(**kw) -> SpfOutcome:
    base = dict(result=SpfResult.PASS, identity=Identity.MAILFROM, domain="example.org",
                sender="a@example.org", envelope_from="a@example.org", client_ip="192.0.2.1",
                helo="mx.example.net", receiver="mx.example.com")
    base.update(kw)
    return _with_texts(SpfOutcome(**base), "http://www.open-spf.org/Why")


def test_received_value_shape():
    o = outcome(mechanism="ip4:192.0.2.0/24")
    assert o.received == ('pass (mx.example.com: domain of a@example.org designates 192.0.2.1 as permitted '
                          'sender) client-ip=192.0.2.1; envelope-from="a@example.org"; helo=mx.example.net; '
                          'receiver=mx.example.com; identity=mailfrom; mechanism="ip4:192.0.2.0/24";')
    assert received_value(o) == o.received


def test_received_value_escapes_hostile_helo():
    o = outcome(helo='x"; receiver=evil (\\', result=SpfResult.PERMERROR, problem="bad (x) \\ y")
    assert 'helo="x\\"; receiver=evil (\\\\";' in o.received
    assert "\\(x\\)" in o.received                       # comment parentheses are quoted-pairs


@given(hs.text(max_size=80), hs.text(max_size=80), hs.text(max_size=80), hs.sampled_from(list(SpfResult)),
       hs.booleans())
def test_texts_never_carry_line_breaks(helo, sender, problem, result, guessed):
    o = outcome(helo=helo, sender=sender, envelope_from=sender, problem=problem, result=result,
                guessed=guessed, explanation=problem)
    for text in (o.received, o.header_comment, o.smtp_comment):
        assert not any(c in text for c in "\r\n\0")
    if guessed:
        assert "spf" not in o.smtp_comment.replace(o.domain, "").lower() or not o.smtp_comment


def test_authres_fragments():
    assert str(authres_fragment(outcome())) == "spf=pass smtp.mailfrom=example.org"
    helo = outcome(identity=Identity.HELO, domain="mx.example.net", sender="postmaster@mx.example.net",
                   envelope_from="", result=SpfResult.FAIL)
    assert str(authres_fragment(helo)) == "spf=fail smtp.helo=mx.example.net"
    bare = outcome(identity=Identity.HELO, domain="", helo="not a name; dkim=pass", result=SpfResult.NONE)
    assert str(authres_fragment(bare)) == 'spf=none smtp.mailfrom="<>"'
    guessed = outcome(guessed=True)
    assert str(authres_fragment(guessed)) == "spf=pass (best guess record for domain) smtp.mailfrom=example.org"


def test_renumbered_outcome_differs_only_in_seq_and_leaves_the_cached_one_alone():
    cached = _with_texts(SpfOutcome(SpfResult.PASS, Identity.MAILFROM, "example.org", "a@example.org",
                                    "a@example.org", "192.0.2.1", "mx.example.org", "mx.test", seq=3), "")
    twin = cached.renumbered(9)
    assert twin.seq == 9 and cached.seq == 3 and twin is not cached
    assert {k: v for k, v in vars(twin).items() if k != "seq"} == {k: v for k, v in vars(cached).items() if k != "seq"}
    assert twin.received == cached.received and twin.received
