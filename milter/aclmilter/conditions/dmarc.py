# SPDX-License-Identifier: GPL-3.0-or-later
"""Registers DMARC settings, `dmarc_status`, the `$dmarc_*` variables and the two controls.

Importing it also registers the end-of-message hooks: Authentication-Results (order 10),
history file (order 50) and failure reports (order 60).
"""

from __future__ import annotations

import os
from typing import Any

from .. import registry
from ..checks import authresults, dmarc_forensic, dmarc_history   # noqa: F401 - hooks register on import
from ..checks.dmarc import DmarcResult, DmarcStatus
from ..context import EvalContext
from ..errors import SyntaxProblem
from ..outcome import Result
from ..stages import BEFORE_DATA, Stage
from .. import validators as st
from .dkim import match_words, parse_word_list

DMARC_WORDS = tuple(s.value for s in DmarcStatus)


def _readable_file(value: Any) -> str:
    path = st.text(value)
    if not os.path.isfile(path):
        raise SyntaxProblem(f"{path}: no such file")
    return path


def _host_port(value: Any) -> str:
    text = st.text(value)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise SyntaxProblem("host:port is expected")
    return text


registry.setting("dmarc_tld_file", _readable_file, None,
                 "Public Suffix List file for Organizational Domains (re-read when it changes); "
                 "unset: publicsuffix2's bundled copy")
registry.setting("dmarc_discovery", st.choice("rfc7489", "dmarcbis"), "rfc7489",
                 "policy discovery: rfc7489 (PSL, pct) or dmarcbis (RFC 9989 DNS tree walk, psd, t)")
registry.setting("dmarc_history_file", st.optional_text, None,
                 "append one OpenDMARC-1.4.2-compatible record per evaluated message (opendmarc-import)")
registry.setting("dmarc_history_failure", st.choice("ignore", "tempfail"), "ignore",
                 "an unwritable history file: log and deliver (ignore) or tempfail the message")
registry.setting("dmarc_history_all", st.boolean, False,
                 "also record messages whose From domain has no DMARC record (OpenDMARC RecordAllMessages)")
registry.setting("dmarc_forensic_sender", st.optional_text, None,
                 "From/envelope sender of failure reports; default do-not-reply@<primary_hostname>")
registry.setting("dmarc_forensic_smtp", _host_port, "127.0.0.1:25", "SMTP server (host:port) that relays failure reports")
registry.setting("dmarc_forensic_timeout", st.number(0.1, 60), 10.0, "seconds allowed for sending one failure report")
registry.setting("dmarc_forensic_rate", st.number(0, 100000, integer=True), 20,
                 "at most this many failure reports per From domain per hour (0: none)")


@registry.condition("dmarc_status", Stage.DATA,
                    parse=lambda t: parse_word_list(t, DMARC_WORDS, "dmarc_status"),
                    checks=("dmarc",),
                    variables=("dmarc_status", "dmarc_status_text", "dmarc_used_domain",
                               "dmarc_domain_policy", "dmarc_ar_header"))
def _dmarc_status(ctx: EvalContext, items: tuple[tuple[bool, str], ...]) -> Result:
    """True if the DMARC outcome is one of the listed words (`!word`: any other outcome).

    The check runs once per message; later dmarc_status conditions reuse its result.
    Returns OK or FAIL, never DEFER: a DNS failure is the outcome `temperror`, which the
    list can name.
    """
    res: DmarcResult = ctx.check("dmarc")
    return match_words(items, {res.status.value})


def _set_control(ctx: EvalContext, name: str) -> None:
    # Before MAIL there is no transaction yet: the control then holds for the connection.
    if ctx.txn is not None:
        ctx.txn.controls[name] = "1"
    else:
        ctx.conn.controls.add(name)


@registry.control("dmarc_disable_verify", BEFORE_DATA)
def _disable(ctx: EvalContext, options: str) -> None:
    """Skip DMARC for this message: dmarc_status then sees `off`, no history, no report."""
    _set_control(ctx, "dmarc_disable_verify")


@registry.control("dmarc_enable_forensic", BEFORE_DATA, aliases=("dmarc_forensic_enable",))
def _forensic(ctx: EvalContext, options: str) -> None:
    """Send a DMARC failure report if the domain's record asks for one (ruf)."""
    _set_control(ctx, "dmarc_enable_forensic")


def _result(ctx: EvalContext) -> DmarcResult | None:
    if ctx.has_result("dmarc"):
        return ctx.result("dmarc")
    if ctx.txn is not None and ctx.stage & (Stage.DATA | Stage.DELIVER):
        return ctx.check("dmarc")
    return None


def _get(fn):
    def get(ctx: EvalContext) -> str | None:
        res = _result(ctx)
        return None if res is None else fn(ctx, res)
    return get


def _align(flag: bool | None) -> str:
    return "" if flag is None else ("pass" if flag else "fail")


registry.add_variable("dmarc_status", _get(lambda c, r: r.status.value), "one word: accept reject quarantine none norecord nofrom temperror off")
registry.add_variable("dmarc_status_text", _get(lambda c, r: r.text), "human-readable DMARC outcome")
registry.add_variable("dmarc_used_domain", _get(lambda c, r: r.policy_domain if r.record is not None else ""),
                      "domain whose DMARC record was used; empty when no record was used")
registry.add_variable("dmarc_domain_policy", _get(lambda c, r: r.domain_policy.value if r.domain_policy else ""),
                      "policy the record declares for this From domain (none/quarantine/reject); empty without a record")
registry.add_variable("dmarc_ar_header", _get(lambda c, r: authresults.dmarc_ar_header(c, r)),
                      "a complete `Authentication-Results: ...` header with the dmarc result (for add_header)")
registry.add_variable("dmarc_alignment_spf", _get(lambda c, r: _align(r.spf_aligned)), "pass/fail, empty without a record")
registry.add_variable("dmarc_alignment_dkim", _get(lambda c, r: _align(r.dkim_aligned)), "pass/fail, empty without a record")
registry.add_variable("dmarc_from_domain", _get(lambda c, r: r.from_domain), "the RFC5322.From domain (A-label)")


def _nofrom_reason(ctx: EvalContext) -> str | None:
    # Needs no DNS and no DKIM: the default policy refuses such mail without running DMARC.
    if ctx.txn is None or not ctx.stage & (Stage.DATA | Stage.DELIVER):
        return None
    frm = ctx.check("dmarc_author")
    return frm.problem if frm.domain is None and not frm.domains else ""


registry.add_variable("dmarc_nofrom_reason", _nofrom_reason,
                      "why the From field gives no author domain (dmarc_status would be nofrom); "
                      "empty when it gives one or more; needs no DNS")
