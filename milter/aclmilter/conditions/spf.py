# SPDX-License-Identifier: GPL-3.0-or-later
"""Registers the `spf` and `spf_guess` conditions, their settings and the `$spf_*` variables.

Semantics follow Exim's experimental SPF support (the seed text and miscmods/spf.c of the
Exim releases that documented it): the argument is a colon-separated list of result words,
read left to right; an item matches when the result equals the word (`*` equals anything),
`!word` matches when the result differs; the first matching item makes the condition true,
and a list without a matching item makes it false. So `spf = !pass:fail` is true for every
result except pass (`!pass` already matches anything else).
(Current Exim evaluates the list with its generic string-list matcher, where `!x` that
matches ends the list as false; the documented, seed semantics are the ones implemented.)

`temperror` is a result like any other; a DNS failure never makes these conditions DEFER.
"""

from __future__ import annotations

from typing import Callable

from .. import registry
from ..checks import spf as spf_check
from ..context import EvalContext
from ..errors import SyntaxProblem
from ..outcome import Result
from ..stages import Stage
from .. import services, validators as st
from ..clients.dns_cache import TtlCache

STAGES = Stage.MAIL | Stage.RCPT | Stage.PREDATA | Stage.DATA

#: result words (plus Exim's deprecated aliases, mapped by their names) and "*"
WORDS = {r.value: r.value for r in spf_check.SpfResult}
WORDS.update({"err_perm": "permerror", "err_temp": "temperror", "invalid": "invalid", "*": "*"})

VARIABLES = ("spf_result", "spf_header_comment", "spf_received", "spf_smtp_comment",
             "spf_result_guessed", "spf_received_header", "spf_used_domain", "spf_received_value")


def parse_result_list(text: str) -> tuple[tuple[bool, str], ...]:
    """Parse `pass:!fail:*` into ((negated, word), ...); raise SyntaxProblem on an unknown word.

    Aliases: err_perm -> permerror, err_temp -> temperror (one seed version swaps their
    descriptions; the names decide). `invalid` is accepted (Exim has it) but no result equals it.
    """
    items: list[tuple[bool, str]] = []
    offset = 0
    for raw in text.split(":"):
        word = raw.strip()
        where = offset + (len(raw) - len(raw.lstrip()))
        offset += len(raw) + 1
        if not word:
            continue
        negated = word.startswith("!")
        name = word[1:].strip().lower() if negated else word.lower()
        if name not in WORDS:
            known = ", ".join(k for k in WORDS if k != "*")
            raise SyntaxProblem(f"unknown SPF result {name!r} (known: {known}, *)", where)
        items.append((negated, WORDS[name]))
    if not items:
        raise SyntaxProblem("an SPF result list is expected, e.g. `fail` or `fail:softfail`")
    return tuple(items)


def list_matches(items: tuple[tuple[bool, str], ...], result: spf_check.SpfResult) -> bool:
    """True when the first item that matches exists: `word` == result, or `!word` != result."""
    for negated, word in items:
        equal = word == "*" or word == result.value
        if equal != negated:
            return True
    return False


@registry.condition("spf", STAGES, parse=parse_result_list, variables=VARIABLES, checks=("spf",))
def _spf(ctx: EvalContext, items: tuple[tuple[bool, str], ...]) -> Result:
    """True when the SPF result of this transaction matches the list. Returns OK or FAIL, never DEFER."""
    outcome = ctx.check("spf")
    return Result.OK if list_matches(items, outcome.result) else Result.FAIL


@registry.condition("spf_guess", STAGES, parse=parse_result_list, variables=VARIABLES,
                    checks=("spf_guess",))
def _spf_guess(ctx: EvalContext, items: tuple[tuple[bool, str], ...]) -> Result:
    """Like `spf`, but a domain without an SPF record is judged by `settings.spf_guess`.

    Returns OK or FAIL, never DEFER: a DNS failure is the result `temperror`."""
    outcome = ctx.check("spf_guess")
    return Result.OK if list_matches(items, outcome.result) else Result.FAIL


# ---- settings ------------------------------------------------------------------------------


def parse_guess_record(value: object) -> str:
    """A `v=spf1 ...` record of printable ASCII; raise SyntaxProblem otherwise."""
    text = st.text(value).strip()
    if not text.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise SyntaxProblem("the best-guess record must be printable ASCII")
    if text.split(" ")[0].lower() != "v=spf1":
        raise SyntaxProblem("the best-guess record must start with `v=spf1 `")
    return text


def parse_url(value: object) -> str:
    """An http(s) URL (or "" for none) used in `$spf_smtp_comment`."""
    text = "" if value is None else st.text(value).strip()
    if text and not text.startswith(("http://", "https://")):
        raise SyntaxProblem("an http:// or https:// URL (or an empty string) is expected")
    if any(c.isspace() for c in text):
        raise SyntaxProblem("the URL must not contain spaces")
    return text


registry.setting("spf_guess", parse_guess_record, spf_check.DEFAULT_GUESS_RECORD,
                 "record evaluated by `spf_guess` when the domain publishes no SPF record")
registry.setting("spf_explanation_url", parse_url, spf_check.DEFAULT_EXPLANATION_URL,
                 "page named in `$spf_smtp_comment` for a fail without the domain's own explanation")


# ---- variables -----------------------------------------------------------------------------


def _field(getter: Callable[[spf_check.SpfOutcome], str]) -> Callable[[EvalContext], str]:
    """A variable reader: the field of the latest spf/spf_guess outcome, "" before any ran."""
    def get(ctx: EvalContext) -> str:
        outcome = spf_check.latest(ctx)
        return "" if outcome is None else getter(outcome)
    return get


_VARS = {
    "spf_result": (lambda o: o.result.value, "SPF result word of the last spf/spf_guess condition"),
    "spf_header_comment": (lambda o: o.header_comment, "human-readable sentence describing the result"),
    "spf_received": (lambda o: f"{o.header_name}: {o.received}",
                     "the complete header, `Received-SPF: <value>` (`X-SPF-Guess: <value>` when "
                     "$spf_result_guessed), for `add_header: \":at_start:$spf_received\"`"),
    "spf_received_value": (lambda o: o.received, "the Received-SPF header value alone (RFC 7208 §9.1)"),
    "spf_smtp_comment": (lambda o: o.smtp_comment,
                         "text for an SMTP reply: the domain's explanation, or a pointer to "
                         "settings.spf_explanation_url; a best guess never mentions SPF"),
    "spf_result_guessed": (lambda o: "1" if o.guessed else "", "1 when the best-guess record decided"),
    "spf_received_header": (lambda o: o.header_name, "Received-SPF, or X-SPF-Guess for a best guess"),
    "spf_used_domain": (lambda o: o.domain, "the domain whose record was evaluated (A-label)"),
}

for _name, (_get, _doc) in _VARS.items():
    registry.add_variable(_name, _field(_get), _doc)


registry.setting("spf_result_cache_ttl", st.number(0, 3600), 30.0,
                 "seconds an SPF result is reused for the same client IP, sender and HELO (0: off); "
                 "temporary errors are never reused")


def _build_results(settings: dict, svc: object) -> TtlCache:
    return TtlCache(max_entries=20000, name="spf_results", metrics=lambda: getattr(svc, "metrics", None))


services.register_factory("spf_results", _build_results)
