# SPDX-License-Identifier: GPL-3.0-or-later
"""SPF and best-guess SPF against a real Knot DNS server serving tests/fixtures/dns/zones.

Each test builds a real EvalContext (Connection, Transaction, Services, Policy) whose
`settings.dns` points at Knot, then calls the registered check and condition functions.
"""

from __future__ import annotations

import pytest

import aclmilter.conditions  # noqa: F401  (registers every feature)
from aclmilter import registry
from aclmilter.checks.spf import Identity, SpfResult, authres_fragment
from aclmilter.conditions.spf import parse_result_list
from aclmilter.context import EvalContext
from aclmilter.errors import LookupDefer
from aclmilter.outcome import Result
from aclmilter.stages import Stage
from tests import builders

pytestmark = pytest.mark.integration

GOOD4, STRANGER4 = "192.0.2.7", "198.51.100.7"


def make_ctx(dns_raw: dict, ip: str, sender: str, helo: str = "client.example.invalid",
             stage: Stage = Stage.MAIL, **overrides: object) -> EvalContext:
    """A context as the session builds it, with settings parsed the way the loader does."""
    settings = {name: s.default for name, s in registry.TABLES.settings.items()}
    settings["dns"] = registry.TABLES.settings["dns"].parse(dns_raw)
    settings["primary_hostname"] = "mx.receiver.test"
    settings["authserv_id"] = None
    for key, value in overrides.items():
        settings[key] = registry.TABLES.settings[key].parse(value)
    return builders.make_ctx(stage=stage, settings=settings, address=ip, helo=helo, sender=sender)


def cond(ctx: EvalContext, name: str, text: str) -> Result:
    """Run the registered condition `name` with argument `text` (parsed as the loader would)."""
    item = registry.TABLES.items[name]
    return item.run(ctx, item.parse(text))


@pytest.fixture
def dnsconf(knot_dns):
    return knot_dns.settings(timeout=2, lifetime=4, budget=10)


@pytest.mark.parametrize(("sender", "ip", "expected"), [
    ("a@strict.spf.test", GOOD4, SpfResult.PASS),
    ("a@strict.spf.test", STRANGER4, SpfResult.FAIL),
    ("a@soft.spf.test", STRANGER4, SpfResult.SOFTFAIL),
    ("a@neutral.spf.test", STRANGER4, SpfResult.NEUTRAL),
    ("a@nospf.spf.test", STRANGER4, SpfResult.NONE),          # TXT exists but is not SPF
    ("a@nothing.spf.test", STRANGER4, SpfResult.NONE),        # NXDOMAIN
    ("a@outside-every-zone.invalid", STRANGER4, SpfResult.NONE),  # root zone: NXDOMAIN, not REFUSED
    ("a@syntax.spf.test", GOOD4, SpfResult.PERMERROR),        # unknown mechanism
    ("a@toomany.spf.test", STRANGER4, SpfResult.PERMERROR),   # 11 DNS-querying mechanisms
    ("a@void.spf.test", STRANGER4, SpfResult.PERMERROR),      # 3 void lookups
    ("a@twice.spf.test", GOOD4, SpfResult.PERMERROR),         # two SPF records
    ("a@ctrl.spf.test", GOOD4, SpfResult.PERMERROR),          # control character in the record
    ("a@nonascii.spf.test", GOOD4, SpfResult.PERMERROR),      # UTF-8 bytes in the record
    ("a@big.spf.test", GOOD4, SpfResult.PASS),                # 11 kB TXT set: TCP fallback
    ("a@mx.spf.test", "192.0.2.25", SpfResult.PASS),
    ("a@strict.spf.test", "2001:db8:1::25", SpfResult.PASS),  # IPv6 client
    ("a@strict.spf.test", "2001:db8:2::1", SpfResult.FAIL),
    ("jörg@bücher.spf.test", GOOD4, SpfResult.PASS),          # IDN sender domain -> A-label
    ("jörg@bücher.spf.test", STRANGER4, SpfResult.FAIL),
])
def test_results_from_real_dns(dnsconf, sender, ip, expected):
    ctx = make_ctx(dnsconf, ip, sender)
    outcome = ctx.check("spf")
    assert outcome.result is expected, outcome
    assert outcome.identity is Identity.MAILFROM
    assert ctx.var("spf_result") == expected.value
    assert cond(ctx, "spf", expected.value) is Result.OK
    for text in (outcome.received, outcome.header_comment, outcome.smtp_comment):
        assert "\r" not in text and "\n" not in text and "\0" not in text


def test_permerror_names_the_problem(dnsconf):
    for domain, words in (("void", "void lookup"), ("toomany", "too many"), ("syntax", "frobnicate")):
        outcome = make_ctx(dnsconf, STRANGER4, f"x@{domain}.spf.test").check("spf")
        assert words in outcome.problem.lower(), outcome.problem
        assert "problem=" in outcome.received


def test_idn_domain_is_checked_as_a_label(dnsconf):
    outcome = make_ctx(dnsconf, GOOD4, "jörg@bücher.spf.test").check("spf")
    assert outcome.domain == "xn--bcher-kva.spf.test"
    assert outcome.sender == "jörg@xn--bcher-kva.spf.test"


def test_pass_variables_and_received_spf(dnsconf):
    ctx = make_ctx(dnsconf, GOOD4, "alice@strict.spf.test", helo="mail.client.test")
    assert ctx.var("spf_result") == "" and ctx.var("spf_received") == ""   # not run yet
    assert cond(ctx, "spf", "pass") is Result.OK
    received = ctx.var("spf_received_value")
    assert ctx.var("spf_received") == "Received-SPF: " + received     # the seed: a complete header
    assert received.startswith("pass (mx.receiver.test: domain of alice@strict.spf.test designates "
                               "192.0.2.7 as permitted sender) ")
    for part in ("client-ip=192.0.2.7;", 'envelope-from="alice@strict.spf.test";', "helo=mail.client.test;",
                 "receiver=mx.receiver.test;", "identity=mailfrom;", 'mechanism="ip4:192.0.2.0/24";'):
        assert part in received
    assert ctx.var("spf_header_comment").endswith("designates 192.0.2.7 as permitted sender")
    assert ctx.var("spf_smtp_comment") == ""
    assert ctx.var("spf_result_guessed") == ""
    assert ctx.var("spf_received_header") == "Received-SPF"
    assert str(authres_fragment(ctx.check("spf"))) == "spf=pass smtp.mailfrom=strict.spf.test"


def test_fail_smtp_comment_is_openspf_style(dnsconf):
    ctx = make_ctx(dnsconf, STRANGER4, "bob@strict.spf.test")
    assert cond(ctx, "spf", "fail") is Result.OK
    assert ctx.var("spf_smtp_comment") == ("Please see http://www.open-spf.org/Why?id=bob@strict.spf.test"
                                           "&ip=198.51.100.7&receiver=mx.receiver.test")


def test_fail_uses_the_domains_explanation(dnsconf):
    ctx = make_ctx(dnsconf, STRANGER4, "bob@exp.spf.test")
    assert ctx.check("spf").result is SpfResult.FAIL
    assert ctx.var("spf_smtp_comment") == "198.51.100.7 is not one of exp.spf.test's designated mail servers."


def test_hostile_explanation_is_sanitised(dnsconf):
    ctx = make_ctx(dnsconf, STRANGER4, "bob@badexp.spf.test")
    assert ctx.check("spf").result is SpfResult.FAIL
    text = ctx.var("spf_smtp_comment")
    assert text and not any(c in text for c in "\r\n\0")
    assert text.startswith("line one")


def test_ipv6_client_ip_is_quoted(dnsconf):
    ctx = make_ctx(dnsconf, "2001:db8:1::25", "a@strict.spf.test")
    ctx.check("spf")
    assert 'client-ip="2001:db8:1::25";' in ctx.var("spf_received")
    assert 'mechanism="ip6:2001:db8:1::/48"' in ctx.var("spf_received")


@pytest.mark.parametrize("sender,result,mechanism", [
    ("a@nomatch.spf.test", "neutral", "mechanism=default;"),     # §9.1: no mechanism matched
    ("a@strict.spf.test", "fail", "mechanism=-all;"),
    ("a@nospf.spf.test", "none", None),
])
def test_received_spf_mechanism(dnsconf, sender, result, mechanism):
    ctx = make_ctx(dnsconf, STRANGER4, sender)
    assert ctx.check("spf").result.value == result
    value = ctx.var("spf_received_value")
    if mechanism is None:
        assert "mechanism=" not in value
    else:
        assert value.endswith(mechanism)


def test_v4_mapped_client_is_shown_and_checked_as_ipv4(dnsconf):
    ctx = make_ctx(dnsconf, "::FFFF:192.0.2.7", "alice@strict.spf.test")
    assert ctx.check("spf").result is SpfResult.PASS          # ip4:192.0.2.0/24 matched
    value = ctx.var("spf_received_value")
    assert "client-ip=192.0.2.7;" in value and "designates 192.0.2.7 as" in value
    assert "ffff" not in value.lower()


def test_null_sender_checks_helo_identity(dnsconf):
    ctx = make_ctx(dnsconf, "198.51.100.25", "", helo="helo.spf.test")
    outcome = ctx.check("spf")
    assert outcome.result is SpfResult.PASS and outcome.identity is Identity.HELO
    assert outcome.sender == "postmaster@helo.spf.test"
    assert "identity=helo;" in outcome.received and 'envelope-from="";' in outcome.received
    assert str(authres_fragment(outcome)) == "spf=pass smtp.helo=helo.spf.test"
    other = make_ctx(dnsconf, "198.51.100.26", "", helo="helo.spf.test").check("spf")
    assert other.result is SpfResult.FAIL


def test_temperror_is_a_result_not_a_defer(silent_dns):
    calls = []

    class Metrics:
        def dns_timeout(self) -> None:
            calls.append(1)

        def check_latency(self, check: str, seconds: float) -> None:
            pass

        def dependency(self, name: str, ok: bool, seconds: float) -> None:
            pass

    ctx = make_ctx(silent_dns.settings(timeout=0.2, lifetime=0.4, budget=0.8), GOOD4, "a@strict.spf.test")
    ctx.services.metrics = Metrics()
    assert cond(ctx, "spf", "fail:softfail") is Result.FAIL          # not DEFER
    assert ctx.var("spf_result") == "temperror"
    assert cond(ctx, "spf", "temperror") is Result.OK
    assert cond(ctx, "spf", "err_temp") is Result.OK
    assert "timeout" in ctx.check("spf").problem
    assert silent_dns.queries >= 1 and calls
    # the plain lookup() interface says "cannot answer now" with LookupDefer
    with pytest.raises(LookupDefer):
        ctx.services.get("dns").lookup("strict.spf.test", "TXT")


def test_once_per_transaction(dnsconf):
    ctx = make_ctx(dnsconf, GOOD4, "a@strict.spf.test")
    first = ctx.check("spf")
    assert cond(ctx, "spf", "pass") is Result.OK
    ctx.stage = Stage.RCPT
    assert cond(ctx, "spf", "pass") is Result.OK
    assert ctx.check("spf") is first


def test_best_guess_when_no_record(dnsconf):
    ctx = make_ctx(dnsconf, "192.0.2.77", "a@nospf.spf.test")
    assert cond(ctx, "spf_guess", "pass") is Result.OK     # a/24 of the guess record
    assert ctx.var("spf_result_guessed") == "1"
    assert ctx.var("spf_received_header") == "X-SPF-Guess"
    assert ctx.var("spf_received").startswith("X-SPF-Guess: pass (mx.receiver.test: best guess record for domain of ")
    assert str(authres_fragment(ctx.check("spf_guess"))) == (
        "spf=pass (best guess record for domain) smtp.mailfrom=nospf.spf.test")
    # plain spf on the same transaction: none, and now *it* is the latest evaluation
    assert cond(ctx, "spf", "none") is Result.OK
    assert ctx.var("spf_result_guessed") == "" and ctx.var("spf_result") == "none"


def test_best_guess_not_used_when_a_record_exists(dnsconf):
    ctx = make_ctx(dnsconf, "192.0.2.77", "a@withspf.spf.test")     # a/24 would pass
    assert cond(ctx, "spf_guess", "fail") is Result.OK
    assert ctx.var("spf_result_guessed") == ""
    assert ctx.var("spf_received_header") == "Received-SPF"


def test_best_guess_for_missing_domain_is_neutral(dnsconf):
    ctx = make_ctx(dnsconf, STRANGER4, "a@nothing.spf.test")
    assert ctx.check("spf_guess").result is SpfResult.NEUTRAL
    assert ctx.var("spf_result_guessed") == "1"


def test_best_guess_reject_text_never_mentions_spf(dnsconf):
    ctx = make_ctx(dnsconf, STRANGER4, "a@nospf.spf.test", spf_guess="v=spf1 a/24 mx/24 -all")
    assert cond(ctx, "spf_guess", "fail") is Result.OK
    comment = ctx.var("spf_smtp_comment")
    assert comment == "198.51.100.7 is not a known mail server of nospf.spf.test"
    assert "spf" not in comment.replace("nospf.spf.test", "").lower()


@pytest.mark.parametrize(("text", "expected"), [
    ("fail", Result.OK), ("pass:fail", Result.OK), ("pass", Result.FAIL),
    ("!fail", Result.FAIL), ("!pass", Result.OK), ("*", Result.OK), ("!*", Result.FAIL),
    ("pass:!fail", Result.FAIL), ("!fail:fail", Result.OK),    # first matching item decides
    ("neutral:softfail", Result.FAIL), ("err_perm:fail", Result.OK),
])
def test_lists_against_a_fail(dnsconf, text, expected):
    ctx = make_ctx(dnsconf, STRANGER4, "a@strict.spf.test")
    assert cond(ctx, "spf", text) is expected


def test_negated_item_before_its_positive_twin(dnsconf):
    # seed/Exim-4.8x semantics: `!pass` does not match a pass, the next item `pass` does.
    # (A generic list matcher would stop at `!pass` and answer false.)
    ctx = make_ctx(dnsconf, GOOD4, "a@strict.spf.test")
    assert cond(ctx, "spf", "!pass:pass") is Result.OK
    assert parse_result_list("!pass:pass") == ((True, "pass"), (False, "pass"))


def test_result_cache_answers_a_repeated_transaction_without_dns(dnsconf, silent_dns):
    """spf_result_cache_ttl: the second identical evaluation is a cache hit (no DNS at all,
    same facts and texts, a newer seq); a temperror is never kept."""
    from aclmilter.checks.spf import evaluate
    from aclmilter.clients.dns_cache import TtlCache

    class NoDns:
        def __getattr__(self, name: str):
            raise AssertionError(f"DNS client used on a cache hit ({name})")

    cache: TtlCache = TtlCache()
    real = make_ctx(dnsconf, GOOD4, "a@strict.spf.test").services.get("dns")
    args = dict(ip=GOOD4, sender="a@strict.spf.test", helo="h.example", receiver="mx.test")
    first = evaluate(real, results=cache, results_ttl=30, **args)
    again = evaluate(NoDns(), results=cache, results_ttl=30, **args)
    assert first.result is SpfResult.PASS and again.seq > first.seq
    assert again.received == first.received and again.header_comment == first.header_comment
    other = evaluate(real, results=cache, results_ttl=30, **{**args, "helo": "other.example"})
    assert other.seq > again.seq and "helo=other.example" in other.received

    dead = make_ctx(silent_dns.settings(timeout=0.2, lifetime=0.4, budget=0.8), GOOD4,
                    "a@strict.spf.test").services.get("dns")
    fresh: TtlCache = TtlCache()
    assert evaluate(dead, results=fresh, results_ttl=30, **args).result is SpfResult.TEMPERROR
    assert len(fresh) == 0
