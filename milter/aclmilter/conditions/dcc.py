# SPDX-License-Identifier: GPL-3.0-or-later
"""DCC through dccifd: settings, the `dccifd` service, the `dcc` check, the `dcc` and
`dcc_rcpt` conditions, `$dcc_result`/`$dcc_header`/`$dcc_rcpt_result`, and the X-DCC
end-of-message hook. Semantics follow Exim's EXPERIMENTAL_DCC (see docs/dcc.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import lazy, registry
from ..actions import Decision, HeaderAdd
from ..context import EvalContext
from ..errors import LookupDefer, SyntaxProblem
from ..outcome import Result
from ..services import Services, register_factory
from ..stages import Stage
from .. import validators as st

# The dccifd codec and the check are imported when a policy sets or uses DCC: `aclmilter
# check` of a policy without it never pays for them (issue 23, lazy.py).
if TYPE_CHECKING:  # pragma: no cover
    from ..checks import dcc as mechanism
    from ..checks.dcc import DccResult
    from ..clients import dccifd
    from ..clients.dccifd import DccifdClient
else:
    mechanism = lazy.module("aclmilter.checks.dcc")
    dccifd = lazy.module("aclmilter.clients.dccifd")

DEFAULT_ADDRESS = "/var/dcc/dccifd"
DEFAULT_OPTIONS = "header"
DEFAULT_TIMEOUT = 10.0
#: `acl_m` variable holding extra header lines added with the X-DCC header (Exim's name).
ADD_HEADER_VAR = "acl_m_dcc_add_header"


# ---- settings ------------------------------------------------------------------------------
def _address(value: Any) -> str:
    text = st.text(value)
    try:
        return str(dccifd.parse_address(text))
    except ValueError as exc:
        raise SyntaxProblem(str(exc)) from None


def _options(value: Any) -> str:
    text = "" if value is None else st.text(value)
    try:
        return " ".join(dccifd.parse_options(text))
    except ValueError as exc:
        raise SyntaxProblem(str(exc)) from None


registry.setting("dccifd_address", _address, DEFAULT_ADDRESS,
                 "dccifd's UNIX socket path, or `<ip> <port>` (IPv4 or IPv6) for TCP")
registry.setting("dccifd_options", _options, DEFAULT_OPTIONS,
                 "dccifd options line (space-separated words such as `header grey-off`)")
registry.setting("dccifd_timeout", st.number(0.1, 600), DEFAULT_TIMEOUT,
                 "seconds for the whole dccifd exchange; a slower dccifd is a temporary failure")
registry.setting("dccifd_recipient_user", st.choice("none", "local_part"), "none",
                 "user sent after each recipient (`\\ruser`): none, or the recipient's local part")
registry.setting("dcc_direct_add_header", st.boolean, False,
                 "add dccifd's X-DCC header (and $acl_m_dcc_add_header lines) to the message")


def _client(settings: dict, services: Services) -> DccifdClient:
    """Build the shared dccifd client from settings (defaults when a key is absent)."""
    address = settings.get("dccifd_address") or DEFAULT_ADDRESS
    options = settings.get("dccifd_options")
    timeout = settings.get("dccifd_timeout") or DEFAULT_TIMEOUT
    return dccifd.DccifdClient(dccifd.parse_address(address), float(timeout),
                               dccifd.parse_options(DEFAULT_OPTIONS if options is None else options),
                               metrics=lambda: services.metrics)


register_factory("dccifd", _client)


# ---- the check -------------------------------------------------------------------------------
@registry.check("dcc")
def _dcc_check(ctx: EvalContext) -> DccResult:
    """One dccifd exchange per message; FAILED (verdict T) when dccifd gave no usable answer."""
    return mechanism.run(ctx)


# ---- `dcc = <opt>[/defer_ok]` ------------------------------------------------------------
@dataclass(frozen=True)
class DccArg:
    """The parsed argument: whether to ask at all, and whether DEFER becomes false."""

    enabled: bool
    defer_ok: bool


def parse_dcc_arg(text: str) -> DccArg:
    """Parse `<opt>[/defer_ok]`; `false`, `0` or an empty first option disable the check."""
    first, *options = text.split("/")
    offset = len(first) + 1
    for option in options:
        if option.strip() != "defer_ok":
            raise SyntaxProblem(f"dcc: unknown option {option.strip()!r} (only defer_ok)", offset)
        offset += len(option) + 1
    first = first.strip()
    return DccArg(first.lower() not in ("", "false", "0"), bool(options))


@registry.condition("dcc", Stage.DATA, parse=parse_dcc_arg, variables=("dcc_result", "dcc_header"),
                    checks=("dcc",))
def _dcc(ctx: EvalContext, arg: DccArg) -> Result:
    """Ask dccifd. Returns OK for A (and obsolete S), FAIL for R and G, DEFER for T or no
    usable answer (FAIL with /defer_ok). A first option of false/0/empty is FAIL without a call.
    """
    if not arg.enabled:
        return Result.FAIL
    result: DccResult = ctx.check("dcc")
    verdict = dccifd.Verdict
    if result.verdict in (verdict.ACCEPT, verdict.SOME):
        return Result.OK
    if result.verdict in (verdict.REJECT, verdict.GREYLIST):
        return Result.FAIL
    if arg.defer_ok:
        ctx.note("dcc", f"{result.reason}; defer_ok makes it false", "fail")
        return Result.FAIL
    raise LookupDefer(f"dcc: {result.reason}")


# ---- `dcc_rcpt = <letters>` (DELIVER) ----------------------------------------------------------
_LETTERS = "ARGT"


def parse_letters(text: str) -> frozenset[str]:
    """Parse a `:`, `,` or blank separated list of per-recipient letters (A, R, G, T)."""
    items = [x for x in re.split(r"[\s:,]+", text.strip()) if x]
    if not items:
        raise SyntaxProblem("dcc_rcpt: at least one of A, R, G, T is expected")
    offset = 0
    for item in items:
        offset = text.find(item, offset)
        if item.upper() not in _LETTERS or len(item) != 1:
            raise SyntaxProblem(f"dcc_rcpt: {item!r} is not one of A, R, G, T", offset)
    return frozenset(x.upper() for x in items)


@registry.condition("dcc_rcpt", Stage.DELIVER, parse=parse_letters, variables=("dcc_rcpt_result",),
                    checks=("dcc",))
def _dcc_rcpt(ctx: EvalContext, letters: frozenset[str]) -> Result:
    """True when dccifd's letter for the current recipient is in the list (T = dccifd failed
    or answered T). Asks dccifd if no `dcc` condition did; never DEFERs by itself.
    """
    if ctx.rcpt is None:
        return Result.FAIL
    result: DccResult = ctx.check("dcc")
    return Result.OK if result.letter_for(ctx.rcpt.address) in letters else Result.FAIL


# ---- variables -----------------------------------------------------------------------------
def _done(ctx: EvalContext) -> DccResult | None:
    if ctx.txn is None:
        return None
    return ctx.result("dcc")


@registry.variable("dcc_result", doc="dccifd's overall letter A/R/G/T/S once `dcc` ran (T: no usable answer)")
def _dcc_result(ctx: EvalContext) -> str | None:
    result = _done(ctx)
    return result.letter if result else None


@registry.variable("dcc_header", doc="the whole X-DCC header (name: value, folds kept), untruncated")
def _dcc_header(ctx: EvalContext) -> str | None:
    result = _done(ctx)
    return result.header if result else None


@registry.variable("dcc_rcpt_result", doc="dccifd's letter A/R/G/T for the current recipient (DELIVER)")
def _dcc_rcpt_result(ctx: EvalContext) -> str | None:
    result = _done(ctx)
    if result is None or ctx.rcpt is None:
        return None
    return result.letter_for(ctx.rcpt.address)


# ---- X-DCC header ---------------------------------------------------------------------------
_HEADER_NAME = re.compile(r"^[!-9;-~]+\Z")


def split_headers(text: str) -> list[tuple[str, str]]:
    """Split header text into (name, value) pairs; continuation lines must start with a blank.

    Raises ValueError when a line is not `Name: value` or a continuation, or when the text
    holds CR (other than in CRLF line ends) or NUL — such text would forge header lines.
    """
    text = text.replace("\r\n", "\n").strip("\n")
    if "\r" in text or "\0" in text:
        raise ValueError("header text holds a bare CR or NUL")
    out: list[tuple[str, str]] = []
    for block in re.split(r"\n(?![ \t])", text):
        name, sep, value = block.partition(":")
        if not sep or not _HEADER_NAME.match(name):
            raise ValueError(f"not a header line: {block[:40]!r}")
        if any(ord(c) < 32 and c not in "\t\n" for c in value):
            raise ValueError(f"control character in header {name}")
        out.append((name, value.removeprefix(" ")))
    return out


@registry.eom_hook("dcc_header", phase="after_data", order=40,
                   wanted=lambda policy: bool(policy.settings.get("dcc_direct_add_header")))
def _add_dcc_header(ctx: EvalContext, decision: Decision | None) -> None:
    """With `dcc_direct_add_header`, queue the X-DCC header and `$acl_m_dcc_add_header` lines.

    Only when the DATA ACL ran `dcc` (Exim adds them from inside the dcc condition) and the
    message is going to be accepted. Malformed extra lines are refused and logged, never added.
    """
    if not ctx.setting("dcc_direct_add_header") or ctx.txn is None or ctx.txn.edits is None:
        return
    if decision is not None and decision.result not in (Result.OK, Result.DISCARD):
        return
    result = _done(ctx)
    if result is None:
        return
    texts = [("X-DCC header", result.header or "")]
    extra = ctx.txn.acl_m.get(ADD_HEADER_VAR, "")
    if extra.strip():
        texts.append((f"${ADD_HEADER_VAR}", extra))
    for what, text in texts:
        if not text:
            continue
        try:
            # Validate every line before queuing any, so a bad block adds nothing.
            adds = [HeaderAdd(name, value, source="dcc_direct_add_header") for name, value in split_headers(text)]
            for add in adds:
                ctx.txn.edits.add_header(add)
        except ValueError as exc:
            ctx.log_lines.append(f"dcc: {what} not added: {exc}")
