# SPDX-License-Identifier: GPL-3.0-or-later
"""Differential test: aclmilter's From-domain extraction against an independent strict reader.

For every message of the internationalised corpus (and a set of hostile fields), the author
domain that `checks.dmarc_from.author_domain` finds is compared with
`tests.fixtures.i18n.strict_from.read` (RFC 5322 §3.4 + RFC 6532, written for the test).
Agreement means:
- a valid field with one domain: the same A-label;
- a valid field with several domains: no single domain, and the same set (each is evaluated);
- group syntax: no author domain;
- an invalid field: no author domain, or the one domain that every `@` in the field names.
aclmilter never names a domain the field does not contain.
"""

from __future__ import annotations

import pytest

from aclmilter.checks.dmarc_from import author_domain
from tests.fixtures.i18n.corpus import CORPUS, Entry
from tests.fixtures.i18n.strict_from import read

HOSTILE = [
    'a@b.example <c@d.example>', '"x <a@junk.example>"@real.example', "Alice <alice@example.com> trailing",
    "x@example.net(.example.com", "a@example.com, b@example.net", "a@example.com, b@EXAMPLE.com",
    "friends: a@example.com;", "undisclosed-recipients:;", "<@>", "not an address", "a@ex ample.com",
    "Jösé <jösé@bücher.example> <x@other.example>", "=?utf-8?q?a=40b.example?= <c@d.example>",
    "a@[192.0.2.1]", "(comment) a@b.example (another)", "a@b.example (unclosed", '"unclosed@x.example',
    "a.@b.example", ".a@b.example", "a..b@c.example", "a@b..example", "a@-b.example", "a@b.example.",
    "<a@b.example>>", "<<a@b.example>", "a@b.example;", "A <a@b.example>, ", "München <m@münchen.example>",
]


def _values(entry: Entry) -> list[str]:
    """The From field values as the milter receives them (UTF-8, undecodable bytes escaped)."""
    out = [] if entry.from_ is None else [entry.from_.decode("utf-8", "surrogateescape")]
    out += [x.decode("utf-8", "surrogateescape").partition(":")[2].strip()
            for x in entry.extra if x.lower().startswith(b"from:")]
    return out


def _disagreement(values: list[str]) -> str:
    got = author_domain([("From", v) for v in values])
    if len(values) != 1:
        return "" if got.domain is None and not got.domains else f"{len(values)} From fields gave {got}"
    strict = read(values[0])
    if got.domain is not None and got.domain not in strict.seen:
        return f"aclmilter invented {got.domain!r}; the field names {strict.seen}"
    if strict.valid and len(strict.domains) == 1:
        return "" if got.domain == strict.domains[0] else f"valid field: strict {strict.domains}, aclmilter {got}"
    if strict.valid:
        return "" if got.domain is None and got.domains == strict.domains else \
            f"several domains: strict {strict.domains}, aclmilter {got}"
    if strict.group:
        return "" if got.domain is None and not got.domains else f"group syntax, aclmilter {got}"
    if got.domain is None and not got.domains:
        return ""
    return "" if got.domain is not None and strict.seen == (got.domain,) else \
        f"invalid field naming {strict.seen}: aclmilter {got}"


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_corpus_from_domain_agrees_with_the_strict_reader(entry):
    assert _disagreement(_values(entry)) == ""


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_fields_agree(value):
    assert _disagreement([value]) == ""


def test_the_strict_reader_is_strict():
    """The second reader must be able to disagree: it rejects what the lenient parser repairs."""
    assert read("Alice <alice@example.com> trailing").valid is False
    assert read("jösé@bücher.example").domains == ("xn--bcher-kva.example",)
    assert read("=?utf-8?b?am9zZUBmb3JnZWQuaWRueA==?=").valid is False
    assert read("g: a@b.example;").group
