# SPDX-License-Identifier: GPL-3.0-or-later
"""Our expansion of the issue-22 items against real `exim -be` (Debian's exim4-daemon-heavy,
unpacked by scripts/setup.sh), $message_smtputf8 against an `exim -bh` session, and `@mx_*`
list items through our DNS layer against real Knot.

One Exim process expands the whole table (tests/harness/exim.py), so the comparison costs
one process start. Each row is compared by outcome ("ok" + text, or "fail"); a forced
failure and an expansion failure both show as "fail" in `exim -be`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from aclmilter import errors, lists
from aclmilter.clients.dns import DnsClient, parse_dns_settings
from aclmilter.expand import parse
from aclmilter.outcome import Result
from aclmilter.policy.loader import load_text
from tests.builders import loader_settings
from tests.harness.exim import expand_batch, run_exim
from tests.unit.test_expand_items_i22 import ACL_POLICY
from tests.unit.fakes_ctx import make_ctx
from tests.unit.test_session import make_session

pytestmark = pytest.mark.integration

DOMAINS = ".dates.fict.example: dotted\n*.dates.fict.example: wild\nexact.example: exact\n*.deep.a.b.example: deep\n*: star\n"
BY_DOMAIN = ("baddomain.com:  !postmaster : *\n"
             "aol.com:  spammer1 : spammer2 : ^[0-9]+$ :\n  spammer3 : spammer4\n"
             "chain.example: spammer5 : >*\n"
             "*: ^\\d{8}$\n")

#: The named ACLs of tests/unit/test_expand_items_i22.py's ACL_POLICY, for Exim's config.
EXIM_ACLS = """
begin acl
greet:
  accept message = hello $acl_arg1 ($acl_narg)
quiet:
  accept
refuse:
  deny message = no $acl_arg2
later:
  defer message = not now
"""
CASES = [
    # INTERNATIONAL operators
    "${utf8_domain_to_alabel:Bücher.EXAMPLE}", "${utf8_domain_to_alabel:straße.de}",
    "${utf8_domain_to_alabel:ASCII.Example}", "${utf8_domain_to_alabel:bücher..example}",
    "${utf8_domain_to_alabel:}", "${utf8_domain_from_alabel:xn--bcher-kva.example}",
    "${utf8_domain_from_alabel:XN--BCHER-KVA.example}", "${utf8_domain_from_alabel:xn--zz.example}",
    "${utf8_localpart_to_alabel:jösé}", "${utf8_localpart_to_alabel:Jösé}", "${utf8_localpart_to_alabel:plain}",
    "${utf8_localpart_from_alabel:xn--js-cja4c}", "${utf8_localpart_from_alabel:plain}",
    "${utf8_localpart_from_alabel:xn--zz}",
    # imapfolder: the spec's examples and the edges of its rules
    "${imapfolder {Foo/Bar}}", "${imapfolder {Foo/Bar}{.}{/}}", "${imapfolder {Räksmörgås}}",
    "${imapfolder {a&b}}", "${imapfolder {a.b}}", "${imapfolder {a~b c}}", "${imapfolder {日本語/x}}",
    "${imapfolder{a.b}{.}}", "${imapfolder{a.b}{/}{.}}", "${imapfolder{a/b}{/}{/}}", "${imapfolder{a/b}{.}{}}",
    "${imapfolder{x\\tz}}", "${imapfolder{€uro/ab}}", "${imapfolder{ÄÖ&/Ü}}", "${imapfolder{}}",
    "${imapfolder{a}{ab}}", "${imapfolder{😀}}", "${imapfolder{a-b.c}{/}{-.}}", "${imapfolder{a///b}}",
    "${imapfolder{/a}}", "${imapfolder{//a}}", "${imapfolder{a//}}", "${imapfolder{ä/}}",
    # hashes
    "${hash{3}{monty}}", "${hash{5}{monty}}", "${hash{3}{10}{monty}}", "${hash_3:monty}",
    "${hash_4_62:abcdefghij}", "${hash{5}{62}{The quick brown fox}}", "${hash{0}{monty}}",
    "${hash{3}{63}{monty}}", "${hash{a}{monty}}", "${hash{3}{mönty}}",
    "${md5:abc}", "${md5:}", "${sha1:abc}", "${sha1:ü}", "${sha256:abc}", "${sha2:abc}", "${sha2_512:abc}",
    "${sha2_384:abc}", "${sha2_256:abc}", "${sha2_224:abc}", "${h_3:monty}", "${h_4_62:abcdefghij}",
    # quoting
    "${listquote{:}{a:b::c}}", "${listquote{:}{}}", "${listquote{,}{x,y}}", "${listquote{::}{a:b}}",
    "${listquote{}{a:b}}",
    '${quote:ab"*"cd}', "${quote:}", "${quote:a.b-c_d}", "${quote:a\\nb\\rc}", "${quote:a\\\\b}", "${quote:a+b}",
    # and{} carries $1.. and $value to later sub-conditions
    "${if and{{match{abc}{(b)}}{eq{$1}{b}}}{yes:$1}{no}}",
    "${if and{{match{abc}{(b)}}{match{xyz}{(y)}}}{$1}{no}}",
    "${if and{{match{abc}{(b)}}{eq{$1}{b}}{match{q}{(z)}}}{$1}{no}}",
    "${if and{{inlist{b}{a:b}}{eq{$value}{b}}}{$value}{no}}",
    "${if or{{eq{a}{b}}{match{abc}{(c)}}}{$1}{no}}",
    # ${acl}
    "${acl{greet}{world}}", "${acl{quiet}}", "${acl {refuse}{a}{b}}", "[${acl{greet}{${acl{greet}{x}}}}]",
    "${acl{later}}",
    "${if acl{{greet}{w}}{y:$value}{n:$value}}", "${if acl {{refuse}{a}{b}} {y:$value}{n:[$value]}}",
    "${if !acl{{quiet}}{y}{n}}", "${if acl{{later}}{y}{n}}",
    # partial- lookups (@DOMAINS@ is the file above)
    "${lookup{2001.dates.fict.example}partial-lsearch{@DOMAINS@}}",
    "${lookup{dates.fict.example}partial-lsearch{@DOMAINS@}}",
    "${lookup{fict.example}partial-lsearch{@DOMAINS@}{$value}{none}}",
    "${lookup{x.exact.example}partial-lsearch{@DOMAINS@}{$value}{none}}",
    "${lookup{x.deep.a.b.example}partial4-lsearch{@DOMAINS@}{$value}{none}}",
    "${lookup{x.deep.a.b.example}partial5-lsearch{@DOMAINS@}{$value}{none}}",
    "${lookup{nothing.example}partial-lsearch*{@DOMAINS@}}",
    "${lookup{nothing.example}partial0-lsearch{@DOMAINS@}}",
    "${lookup{a.dates.fict.example}partial(.)lsearch{@DOMAINS@}{$value}{none}}",
    "${if match_domain{a.dates.fict.example}{partial-lsearch;@DOMAINS@}{yes}{no}}",
    *[f"${{lookup{{{k}}}{t}{{@DOMAINS@}}{{[$1][$2][$value]}}}}" for k, t in (
        ("2001.x.dates.fict.example", "partial-lsearch"), ("exact.example", "partial-lsearch"),
        ("dates.fict.example", "partial-lsearch"), ("a.dates.fict.example", "partial(.)lsearch"),
        ("no.example", "partial-lsearch*"), ("exact.example", "lsearch"))],
    "${if match{ab}{(a)(b)}{${lookup{x.dates.fict.example}partial-lsearch{@DOMAINS@}{[$1][$2]}}[$1][$2]}}",
    "${if match{ab}{(a)(b)}{${lookup{exact.example}lsearch{@DOMAINS@}{[$1][$2]}}}}",
    # @@lsearch address items
    *[f"${{if match_address{{{a}}}{{@@lsearch;@BY_DOMAIN@}}{{yes}}{{no}}}}" for a in (
        "anyone@baddomain.com", "postmaster@baddomain.com", "spammer4@aol.com", "12345@aol.com",
        "friend@aol.com", "x@unlisted.example", "spammer5@chain.example", "12345678@chain.example",
        "friend@chain.example")],
    "${if match_address{12345678@unlisted.example}{@@lsearch*;@BY_DOMAIN@}{yes}{no}}",
]


def _ours(text: str, ctx) -> tuple[str, str]:
    try:
        return "ok", parse(text).evaluate(ctx)
    except (errors.ExpansionFailed, errors.ForcedFail, errors.LookupDefer) as exc:
        return "fail", str(exc)


def test_items_match_real_exim(tmp_path: Path) -> None:
    (tmp_path / "domains").write_text(DOMAINS)
    (tmp_path / "by-domain").write_text(BY_DOMAIN)
    texts = [c.replace("@DOMAINS@", str(tmp_path / "domains")).replace("@BY_DOMAIN@", str(tmp_path / "by-domain"))
             for c in CASES]
    exim = expand_batch(texts, tmp_path, EXIM_ACLS)
    ctx = make_ctx()
    ctx.policy = load_text(ACL_POLICY, "p.yaml")
    differ = []
    for text, (kind, value) in zip(texts, exim, strict=True):
        ours = _ours(text, ctx)
        if ours[0] != kind or (kind == "ok" and ours[1] != value):
            differ.append((text, (kind, value), ours))
    assert not differ, "\n".join(f"{t}\n  exim: {e}\n  ours: {o}" for t, e, o in differ)


# ---- @mx_* through our DNS client and real Knot ---------------------------------------------

def test_mx_items_through_knot(knot_dns) -> None:
    client = DnsClient.from_settings(parse_dns_settings(knot_dns.settings()))
    # mx.spf.test has "MX 10 mail.mx.spf.test", which is 192.0.2.25 (tests/fixtures/dns/zones)
    ctx = make_ctx(dns=client, settings=loader_settings({"local_interfaces": ["192.0.2.0/24"]}))
    spec = lambda text: lists.parse_list(text, "domain")  # noqa: E731
    assert lists.match(ctx, spec("@mx_any"), "mx.spf.test") is Result.OK
    assert lists.match(ctx, spec("@mx_primary"), "mx.spf.test") is Result.OK
    assert lists.match(ctx, spec("@mx_secondary"), "mx.spf.test") is Result.FAIL
    assert lists.match(ctx, spec("@mx_any/ignore=192.0.2.25"), "mx.spf.test") is Result.FAIL
    assert lists.match(ctx, spec("@mx_any"), "nothing.spf.test") is Result.FAIL
    other = make_ctx(dns=client, settings=loader_settings({"local_interfaces": ["203.0.113.1"]}))
    assert lists.match(other, spec("@mx_any"), "mx.spf.test") is Result.FAIL


def test_mx_item_defers_when_dns_does_not_answer(silent_dns) -> None:
    client = DnsClient.from_settings(parse_dns_settings(silent_dns.settings(timeout=0.2, lifetime=0.4)))
    ctx = make_ctx(dns=client)
    assert lists.match(ctx, lists.parse_list("@mx_any", "domain"), "mx.spf.test") is Result.DEFER
    assert lists.match(ctx, lists.parse_list("+ignore_defer : @mx_any", "domain"), "mx.spf.test") is Result.FAIL


# ---- $message_smtputf8 against an `exim -bh` session ------------------------------------------

def test_message_smtputf8_matches_exim_bh(tmp_path: Path) -> None:
    config = ("smtputf8_advertise_hosts = *\nacl_smtp_rcpt = r\nbegin acl\n"
              "r:\n  deny message = utf8=$message_smtputf8\n")
    dialog = (b"EHLO x.example\r\nMAIL FROM:<a@b.example> SMTPUTF8\r\nRCPT TO:<c@d.example>\r\n"
              b"RSET\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nQUIT\r\n")
    out = run_exim(["-bh", "192.0.2.1"], dialog, tmp_path, config)
    exim = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("550 ")]
    s = make_session(tmp_path, "acl:\n  rcpt:\n    - deny: {message: \"utf8=$message_smtputf8\"}\n")
    s.connect("[192.0.2.1]", "inet", "192.0.2.1", 4000, {})
    ours = []
    for params in (["SMTPUTF8"], []):
        s.mail("<a@b.example>", params, {})
        ours.append(s.rcpt("<c@d.example>", [], {}).reply.lines[0])
        s.abort()
    assert exim == ["utf8=yes", "utf8=no"]
    assert ours == exim


# ---- random texts, one more batch ------------------------------------------------------------

def _random_cases(seed: int) -> list[str]:
    """imapfolder, hash and the A-label operators on seeded random text (~550 cases)."""
    rnd = random.Random(seed)
    alphabet = "ab/.&-~ Zé€日😀:!"

    def word(n: int) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, n)))

    def esc(t: str) -> str:
        return t.replace("\\", "\\\\").replace("$", "\\$").replace("{", "\\{").replace("}", "\\}")

    cases = []
    for _ in range(150):
        sep = rnd.choice(["/", ".", ":", "&", "a"])
        name = word(8)
        if name and not name.strip(sep):
            continue          # only separators: Exim 4.96 crashes on an empty result (we give "")
        cases.append(f"${{imapfolder{{{esc(name)}}}{{{sep}}}{{{esc(word(3))}}}}}")
    for _ in range(100):
        text = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyzé0123456789 ") for _ in range(rnd.randint(1, 30)))
        cases.append(f"${{hash{{{rnd.randint(1, 10)}}}{{{rnd.randint(1, 62)}}}{{{text}}}}}")
    labels = ["bücher", "EXAMPLE", "straße", "日本", "xn--bcher-kva", "a-b", "Ελλάδα", "ü"]
    for _ in range(80):
        domain = ".".join(rnd.choice(labels) for _ in range(rnd.randint(1, 3)))
        local = "".join(rnd.choice("aBçé.+-日") for _ in range(rnd.randint(1, 8)))
        cases += [f"${{utf8_domain_to_alabel:{domain}}}",
                  f"${{utf8_domain_from_alabel:${{utf8_domain_to_alabel:{domain}}}}}",
                  f"${{utf8_localpart_to_alabel:{local}}}",
                  f"${{utf8_localpart_from_alabel:${{utf8_localpart_to_alabel:{local}}}}}"]
    return cases


def test_random_texts_match_real_exim(tmp_path: Path) -> None:
    texts = _random_cases(22)
    exim = expand_batch(texts, tmp_path)
    ctx = make_ctx()
    differ = [(t, e, o) for t, e in zip(texts, exim, strict=True)
              if (o := _ours(t, ctx))[0] != e[0] or (e[0] == "ok" and o[1] != e[1])]
    assert len(texts) > 500
    assert not differ, "\n".join(f"{t}\n  exim: {e}\n  ours: {o}" for t, e, o in differ[:20])
