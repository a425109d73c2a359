# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure DMARC pieces: From parsing, record parsing, PSL, tree-walk names, dmarc_status lists."""

from __future__ import annotations

import enum
import os
import time

import pytest

from aclmilter.checks.dmarc_discovery import walk_names
from aclmilter.checks.dmarc_from import author_domain
from aclmilter.checks.dmarc_psl import PslCache
from aclmilter.checks.dmarc_record import AlignMode, Policy, RecordError, is_dmarc, parse_record
from aclmilter.conditions.dkim import match_words, parse_word_list
from aclmilter.conditions.dmarc import DMARC_WORDS
from aclmilter.errors import SyntaxProblem
from aclmilter.outcome import Result
from tests.fixtures.dmarc.ctxhelp import PSL


@pytest.mark.parametrize("headers,domain,problem", [
    ([("From", "Alice <alice@Example.COM>")], "example.com", ""),
    ([("From", "alice@example.com")], "example.com", ""),
    ([("To", "x@example.com")], None, "no From header field"),
    ([("From", "a@example.com"), ("From", "b@example.com")], None, "2 From header fields"),
    ([("From", "a@example.com, b@example.net")], None, "From holds 2 domains"),
    ([("From", "a@example.com, Jösé <j@b.example>")], None, "From holds 2 domains"),
    ([("From", "a@example.com, b@EXAMPLE.com")], "example.com", ""),
    ([("From", "friends: a@example.com;")], None, "From uses group syntax"),
    ([("From", "undisclosed-recipients:;")], None, "From uses group syntax"),
    ([("From", "\"Someone <someone@junk.example>\" <real@example.org>")], "example.org", ""),
    ([("From", "\"Someone <someone@junk.example>\"@mydomain.example")], "mydomain.example", ""),
    ([("From", "\"X, Y\" via Z <list@lists.example>")], "lists.example", ""),
    ([("From", "Ünïcode <u@bücher.example>")], "xn--bcher-kva.example", ""),
    ([("From", "x@example.net(.example.com")], "example.net", ""),     # unterminated comment: one domain
    ([("From", "not an address")], None, None),
    ([("From", "")], None, "empty From header field"),
    ([("From", "<@>")], None, None),
    ([("From", "a@b.example <c@d.example>")], None, "From header field does not parse"),
    ([("From", "Alice <alice@example.com> trailing")], "example.com", ""),
    # RFC 6532 local parts: Python reports a defect, the domain is certain (was a p=reject bypass)
    ([("From", "Support <jösé@forged.example>")], "forged.example", ""),
    ([("From", "jösé@Forged.Example")], "forged.example", ""),
    ([("From", "Alice <a@example.com")], "example.com", ""),           # missing '>'
    # defective and a second domain anywhere in the field: ambiguous, never a guess
    ([("From", "Alice <a@example.com> b@other.example")], None, "From header field does not parse"),
    ([("From", "jösé@forged.example (or @other.example")], None, "From header field does not parse"),
    ([("From", "a@ex ample.com")], None, None),
    ([("From", "=?utf-8?q?Al=C3=AFce?= <a@example.com>")], "example.com", ""),
    ([("From", "Alice\r\n\t<alice@example.com>")], "example.com", ""),
])
def test_author_domain(headers, domain, problem):
    got = author_domain(headers)
    assert got.domain == domain
    if problem is not None:
        assert got.problem == problem
    if domain is None:
        assert got.problem


def test_record_parsing():
    r = parse_record("v=DMARC1; p=reject; sp=quarantine; np=none; adkim=s; pct=50; "
                     "rua=mailto:a@x.example,mailto:b@y.example!10m; ruf=mailto:f@x.example; fo=1:d; psd=n; t=y; zz=1")
    assert (r.p, r.sp, r.np, r.adkim, r.aspf, r.pct) == (Policy.REJECT, Policy.QUARANTINE, Policy.NONE,
                                                         AlignMode.STRICT, AlignMode.RELAXED, 50)
    assert r.rua == ("mailto:a@x.example", "mailto:b@y.example!10m") and r.fo == ("1", "d")
    assert r.psd == "n" and r.testing
    assert parse_record("v=DMARC1;p=none").p is Policy.NONE
    with pytest.raises(RecordError):
        parse_record("v=DMARC1; p=bogus")
    with pytest.raises(RecordError):
        parse_record("v=DMARC1; p=reject; sp=maybe")
    implicit = parse_record("v=DMARC1; p=bogus; rua=mailto:a@x.example")
    assert implicit.p is Policy.NONE and implicit.implicit_none
    assert not is_dmarc("v=spf1 -all") and not is_dmarc("v=DMARC10; p=none") and is_dmarc("v = DMARC1 ;p=none")
    assert Policy.REJECT.one_lower() is Policy.QUARANTINE and Policy.QUARANTINE.one_lower() is Policy.NONE


def test_remembered_records_cannot_be_changed_by_a_caller():
    """parse_record hands every message of a domain the same object (lru_cache): it must be
    immutable all the way down, or one message's change would reach the next ones."""
    text = "v=DMARC1; p=reject; rua=mailto:a@x.example; ruf=mailto:f@x.example; fo=1:d"
    r = parse_record(text)
    assert parse_record(text) is r
    hash(r)                      # raises TypeError if any field is a list, dict or set
    with pytest.raises(AttributeError):
        r.p = Policy.NONE        # type: ignore[misc]
    assert all(isinstance(getattr(r, f), (str, int, bool, tuple, enum.Enum, type(None)))
               for f in r.__dataclass_fields__)
    for _ in range(2):           # a refused text is not remembered: it raises every time
        with pytest.raises(RecordError):
            parse_record("v=DMARC1; p=bogus")


def test_psl_org_domain_and_reload(tmp_path):
    cache = PslCache(str(PSL))
    assert cache.org_domain("a.b.pass.dmarcx") == "pass.dmarcx"
    assert cache.org_domain("x.shop.co.dmarcx") == "shop.co.dmarcx"
    assert cache.org_domain("dmarcx") == "dmarcx"
    assert cache.org_domain("a.b.unlisted") == "b.unlisted"   # implicit "*" rule
    f = tmp_path / "psl.dat"
    f.write_text("dmarcx\n")
    cache = PslCache(str(f))
    assert cache.org_domain("x.shop.co.dmarcx") == "co.dmarcx"
    f.write_text("dmarcx\nco.dmarcx\n")
    later = time.time() + 5
    os.utime(f, (later, later))   # a new mtime is what makes the cache reload
    assert cache.org_domain("x.shop.co.dmarcx") == "shop.co.dmarcx"


def test_walk_names_cap():
    names = walk_names("a.b.c.d.e.f.g.h.i.j.mail.example.com")
    assert names == ["a.b.c.d.e.f.g.h.i.j.mail.example.com", "g.h.i.j.mail.example.com",
                     "h.i.j.mail.example.com", "i.j.mail.example.com", "j.mail.example.com",
                     "mail.example.com", "example.com", "com"]
    assert walk_names("x.example.com") == ["x.example.com", "example.com", "com"]


def test_dmarc_status_word_list():
    items = parse_word_list("accept : none : off", DMARC_WORDS, "dmarc_status")
    assert match_words(items, {"none"}) is Result.OK
    assert match_words(items, {"reject"}) is Result.FAIL
    neg = parse_word_list("!accept", DMARC_WORDS, "dmarc_status")
    assert match_words(neg, {"reject"}) is Result.OK and match_words(neg, {"accept"}) is Result.FAIL
    # left to right: "!reject" matches first for quarantine
    assert match_words(parse_word_list("!reject : reject", DMARC_WORDS, "x"), {"reject"}) is Result.OK
    assert parse_word_list("<; reject ; quarantine", DMARC_WORDS, "x") == ((False, "reject"), (False, "quarantine"))
    with pytest.raises(SyntaxProblem):
        parse_word_list("accept : rejected", DMARC_WORDS, "dmarc_status")


def test_multi_domain_from_lists_every_domain():
    got = author_domain([("From", "a@Example.com, b@example.net, c@example.com")])
    assert got.domain is None and got.domains == ("example.com", "example.net")
    assert author_domain([("From", "a@b.example <c@d.example>")]).domains == ()
