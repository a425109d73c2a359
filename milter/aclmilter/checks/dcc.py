# SPDX-License-Identifier: GPL-3.0-or-later
"""The DCC check: ask dccifd once per message and return a frozen, typed fact.

The check never raises for dccifd trouble: an unreachable, slow or babbling dccifd, or an
envelope that cannot be sent safely, is a `DccResult` with status FAILED and verdict T, so
that the outcome is memoised and a second condition never reports the message again (each
request counts as a report to the DCC network). Conditions turn the result into OK/FAIL/DEFER.
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..clients.dccifd import (MAX_HEADER_REPLY, Answer, DccifdClient, Envelope, ProtocolError,
                              TransportError, UnsafeField, Verdict, encode_envelope, encode_message,
                              parse_answer)

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext
    from ..state import Recipient

#: `acl_m` variable whose value replaces the client IP sent to dccifd (Exim's name).
OVERRIDE_IP_VAR = "acl_m_dcc_override_client_ip"


class DccStatus(enum.Enum):
    """Whether dccifd gave a usable answer."""

    ANSWERED = "answered"   # a well-formed reply; see `verdict` (which may itself be T)
    FAILED = "failed"       # not asked (unsafe envelope) or no usable reply: counts as T


@dataclass(frozen=True)
class DccResult:
    """dccifd's verdict for one message.

    `verdict` is the overall letter (T when FAILED). `recipients` pairs each address sent
    with its letter (A/R/G; every letter is T when the overall verdict is T or the call
    failed, because dccifd's all-R line on T is not a spam verdict). `header` is the X-DCC
    header text, name included, folds kept as `\\n<TAB>`, or None. `client_ip` is the address
    sent ("" for unknown). `reason` explains a failure or a T for the log.
    """

    status: DccStatus
    verdict: Verdict
    recipients: tuple[tuple[str, str], ...]
    header: str | None
    client_ip: str
    reason: str = ""

    @property
    def letter(self) -> str:
        """The overall result letter as `$dcc_result` shows it."""
        return self.verdict.value

    def letter_for(self, address: str) -> str:
        """The letter dccifd gave `address`, or "" if it was not among the recipients sent."""
        for sent, letter in self.recipients:
            if sent == address:
                return letter
        return ""


def client_ip(ctx: "EvalContext") -> tuple[str, bool]:
    """Return (IP to send, overridden?) honouring `$acl_m_dcc_override_client_ip`.

    An override that is not an IP address is ignored with a log line (the real address is
    sent) because dccifd would otherwise silently fall back to a Received: header.
    """
    override = ctx.txn.acl_m.get(OVERRIDE_IP_VAR, "").strip() if ctx.txn else ""
    if override:
        try:
            return str(ipaddress.ip_address(override.removeprefix("IPv6:"))), True
        except ValueError:
            ctx.log_lines.append(f"dcc: ${OVERRIDE_IP_VAR} {override[:60]!r} is not an IP address; "
                                 "sending the client address")
    ip = ctx.conn.client.ip
    return (str(ip) if ip is not None else ""), False


def _rcpt_user(rcpt: "Recipient", mode: str) -> str:
    return rcpt.local_part if mode == "local_part" else ""


def build_envelope(ctx: "EvalContext") -> Envelope:
    """Describe the transaction as dccifd wants it: real IP (or override), HELO, sender, rcpts.

    Recipients are the accepted ones not discarded at RCPT, in the order they were given;
    the verified client name goes after `\\r` only with the real (not overridden) address.
    """
    ip, overridden = client_ip(ctx)
    name = ctx.conn.client.name
    if overridden or not ip or name.lower() == "unknown":
        name = ""
    mode = ctx.setting("dccifd_recipient_user") or "none"
    txn = ctx.txn
    rcpts = tuple((r.address, _rcpt_user(r, mode)) for r in (txn.accepted_recipients if txn else ())
                  if not r.discarded)
    return Envelope(ip, name, ctx.conn.helo, txn.sender if txn else "", rcpts)


def _failed(env: Envelope | None, reason: str) -> DccResult:
    rcpts = tuple((a, "T") for a, _ in env.recipients) if env else ()
    return DccResult(DccStatus.FAILED, Verdict.TEMPFAIL, rcpts, None, env.client_ip if env else "", reason)


def _from_answer(env: Envelope, answer: Answer) -> DccResult:
    if answer.verdict is Verdict.TEMPFAIL:
        letters = ["T"] * len(env.recipients)
        reason = "dccifd answered T (temporary failure of the DCC system)"
    else:
        letters = [v.value for v in answer.recipients]
        reason = ""
    pairs = tuple((addr, letter) for (addr, _), letter in zip(env.recipients, letters, strict=False))   # a short answer: the rest have no letter
    return DccResult(DccStatus.ANSWERED, answer.verdict, pairs, answer.header, env.client_ip, reason)


def run(ctx: "EvalContext") -> DccResult:
    """Ask dccifd about the current message (headers and body as received).

    Returns ANSWERED with dccifd's verdict, or FAILED (verdict T) when the envelope holds
    CR/LF/NUL or exceeds dccifd's limits (dccifd is then not contacted), when dccifd cannot
    be reached, closes early, answers garbage, or misses the deadline. Never raises for these.
    """
    env: Envelope | None = None
    try:
        env = build_envelope(ctx)
        client: DccifdClient = ctx.services.get("dccifd")
        options = client.options
        if ctx.mode.simulate:
            # A simulation must not count as a report of the message to the DCC network
            # (`query`) nor start a greylist embargo for its triple (`grey-query`): else the
            # real message from that sender would later pass the greylist unreported.
            options = (*options, *(o for o in ("query", "grey-query") if o not in options))
        head = encode_envelope(options, env)
        txn = ctx.txn
        headers = encode_message(txn.headers, b"") if txn else b"\r\n"
        size = len(headers) + (txn.body.size if txn else 0)
        limit = MAX_HEADER_REPLY + (size if "body" in options else 0)
        # The body goes out chunk by chunk from the spool: memory does not grow with it.
        message = itertools.chain((headers,), txn.body.chunks() if txn else ())
        reply = client.exchange(head, message, limit)
        answer = parse_answer(reply, len(env.recipients), options)
    except UnsafeField as exc:
        result = _failed(env, f"not sent to dccifd: {exc}")
    except (TransportError, ProtocolError) as exc:
        result = _failed(env, str(exc))
    else:
        result = _from_answer(env, answer)
    if result.reason:
        ctx.log_lines.append(f"dcc: {result.reason}")
    elif result.verdict is Verdict.REJECT:
        ctx.log_lines.append("dcc: rejected by DCC")
    return result
