# SPDX-License-Identifier: GPL-3.0-or-later
"""Registers DKIM settings, the `dkim_status` condition and the `$dkim_*` variables."""

from __future__ import annotations

from ..checks import dkim as dkim_check
from ..checks.dkim import DkimResult, DkimSignature
from ..checks.dmarc_upstream import trusted_upstream_dkim
from ..context import EvalContext
from ..errors import SyntaxProblem
from ..outcome import Result
from ..stages import Stage
from .. import registry
from .. import validators as st

registry.setting("dkim_max_signatures", st.number(0, 100, integer=True), dkim_check.DEFAULT_MAX_SIGNATURES,
                 "verify at most this many DKIM-Signature fields per message (the rest are ignored)")
registry.setting("dkim_min_key_bits", st.number(512, 16384, integer=True), dkim_check.DEFAULT_MIN_KEY_BITS,
                 "RSA keys shorter than this make a signature permerror")
registry.setting("dkim_header_leading_space", st.choice("auto", "add", "keep"), "auto",
                 "restore the space Postfix removes after each header colon: auto (unless present), "
                 "add (always), keep (never; use when the milter negotiated SMFIP_HDR_LEADSPC)")



@registry.check("dkim")
def _dkim(ctx: EvalContext) -> DkimResult:
    """The message's DKIM results (once per transaction). Trust policy: when an
    Authentication-Results field from one of `settings.trusted_authserv_ids` carries dkim
    results, they are the result; otherwise every signature is verified here.

    Returns a DkimResult; DNS trouble is a TEMPERROR signature status, never an exception."""
    upstream = trusted_upstream_dkim(ctx)
    if upstream is not None:
        return upstream
    return dkim_check.verify_transaction(ctx)


DKIM_WORDS = ("pass", "fail", "neutral", "temperror", "permerror", "none")
EOM_STAGES = Stage.DATA | Stage.DELIVER


def parse_word_list(text: str, words: tuple[str, ...], what: str) -> tuple[tuple[bool, str], ...]:
    """Parse an Exim list of result words, each optionally negated with `!`.

    Returns ((negated, word), ...); raises SyntaxProblem naming the offending word.
    """
    sep = ":"
    body = text.strip()
    if body.startswith("<") and len(body) > 1 and not body[1].isalnum():
        sep, body = body[1], body[2:]
    out: list[tuple[bool, str]] = []
    offset = len(text) - len(text.lstrip())
    for raw in body.replace(sep * 2, "\0").split(sep):
        item = raw.replace("\0", sep).strip()
        if not item:
            continue
        neg = item.startswith("!")
        word = item[1:].strip().lower() if neg else item.lower()
        if word not in words:
            raise SyntaxProblem(f"{what}: unknown value {word!r} (known: {' '.join(words)})",
                                max(0, text.find(item, offset)))
        out.append((neg, word))
    if not out:
        raise SyntaxProblem(f"{what}: an empty list never matches")
    return tuple(out)


def match_words(items: tuple[tuple[bool, str], ...], actual: set[str]) -> Result:
    """Left to right, first item that matches wins (a `!word` matches any other outcome)."""
    for neg, word in items:
        if (word in actual) != neg:
            return Result.OK
    return Result.FAIL


@registry.condition("dkim_status", EOM_STAGES,
                    parse=lambda t: parse_word_list(t, DKIM_WORDS, "dkim_status"), checks=("dkim",))
def _dkim_status(ctx: EvalContext, items: tuple[tuple[bool, str], ...]) -> Result:
    """True if a DKIM signature's status (or `none` for an unsigned message) is listed.

    Returns OK or FAIL, never DEFER: a key that cannot be fetched now is the status
    `temperror`, which the list can name."""
    res: DkimResult = ctx.check("dkim")
    actual = {s.status.value for s in res.signatures} or {"none"}
    return match_words(items, actual)


def _result(ctx: EvalContext) -> DkimResult | None:
    if ctx.has_result("dkim"):
        return ctx.result("dkim")
    if ctx.txn is not None and ctx.stage & EOM_STAGES:
        return ctx.check("dkim")
    return None


def _current(ctx: EvalContext) -> DkimSignature | None:
    """The signature the singular variables describe: the first passing one, else the first."""
    res = _result(ctx)
    if res is None or not res.signatures:
        return None
    return next((s for s in res.signatures if s.status.value == "pass"), res.signatures[0])


def _sig_var(attr: str):
    def get(ctx: EvalContext) -> str | None:
        sig = _current(ctx)
        if sig is None:
            return None
        value = getattr(sig, attr)
        return value.value if hasattr(value, "value") else str(value)
    return get


registry.add_variable("dkim_verify_status", lambda c: (r.status.value if (r := _result(c)) else None),
                      "summary DKIM status: pass if any signature passed, else temperror/fail/permerror/neutral, none if unsigned")
registry.add_variable("dkim_signers", lambda c: (":".join(r.passing_domains) if (r := _result(c)) else None),
                      "colon-separated d= domains whose signatures passed")
registry.add_variable("dkim_all_signers", lambda c: (":".join(s.domain for s in r.signatures) if (r := _result(c)) else None),
                      "colon-separated d= domains of every verified signature")
registry.add_variable("dkim_cur_signer", _sig_var("domain"), "d= of the first passing (else first) signature")
registry.add_variable("dkim_domain", _sig_var("domain"), "same as $dkim_cur_signer")
registry.add_variable("dkim_selector", _sig_var("selector"), "s= of the current signature")
registry.add_variable("dkim_identity", _sig_var("identity"), "i= of the current signature")
registry.add_variable("dkim_algo", _sig_var("algorithm"), "a= of the current signature")
registry.add_variable("dkim_verify_reason", _sig_var("reason"), "why the current signature did not pass")
registry.add_variable("dkim_signature_count", lambda c: (str(len(r.signatures) + r.skipped) if (r := _result(c)) else None),
                      "number of DKIM-Signature fields (including those beyond dkim_max_signatures)")
