"""DMARC failure reports (RFC 7489 §7.3, RFC 6591 auth-failure ARF), off unless enabled.

`wants_report` decides from the record's `fo` and the results; `build_report` returns the
multipart/report message; the `dmarc_forensic` end-of-message hook sends it over SMTP
(smtplib, bounded by settings.dmarc_forensic_timeout) to the record's `mailto:` ruf
addresses, rate-limited per From domain, never for a report (no loops). Failures are
logged and never affect the message.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import collections
import logging
import threading
import urllib.parse
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .. import lazy, registry
from ..actions import clean_line
from ..clients.dns_names import BadName, to_alabel
from ..hostname import primary_hostname
from ..services import register_factory

from .authresults import build_header, dmarc_result
from .dmarc import DmarcResult
from .dkim import DkimStatus

# imported by the first failure report: a policy check or a dry run never sends one
uuid = lazy.module("uuid")
_email_utils = lazy.module("email.utils")

if TYPE_CHECKING:  # pragma: no cover  (at run time the module loads on first use: lazy.py)
    import smtplib
    from ..context import EvalContext
else:
    smtplib = lazy.module("smtplib")     # only when a report is sent (lazy.py)

log = logging.getLogger("aclmilter.dmarc.forensic")

USER_AGENT = "aclmilter"
MAX_RUF = 5
#: an RFC 6531 local part: dot-atom of atext plus any non-ASCII character
# compiled by the first report (the \U0010ffff range alone costs ~6 ms to compile)
_LOCAL = lazy.regex(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+)*\Z")
_ADDR = lazy.regex(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")


class RateLimiter:
    """At most `limit` events per key per hour (in memory, per process). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, collections.deque] = {}

    def allow(self, key: str, limit: int, now: float) -> bool:
        with self._lock:
            q = self._seen.setdefault(key, collections.deque())
            while q and q[0] <= now - 3600:
                q.popleft()
            if len(q) >= limit:
                return False
            q.append(now)
            return True


register_factory("dmarc_forensic_limiter", lambda settings, services: RateLimiter())


def ruf_addresses(res: DmarcResult) -> list[str]:
    """mailto: addresses of the record's ruf (the `!size` suffix cut); other schemes ignored."""
    rec = res.record
    if rec is None or rec.psd == "y":   # RFC 9991: no failure reports for PSD records
        return []
    out: list[str] = []
    for uri in rec.ruf:
        if not uri.lower().startswith("mailto:"):
            continue
        addr = _mailbox(uri[7:].split("!", 1)[0].strip())
        if addr and addr.lower() not in (a.lower() for a in out):
            out.append(addr)
    return out[:MAX_RUF]


def _mailbox(text: str) -> str:
    """The address of a mailto: URI (percent-decoded UTF-8, RFC 6068), domain as an A-label;
    "" unless it is one plain address (a UTF-8 local part is fine: RFC 6531)."""
    try:
        addr = urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError:
        return ""
    local, at, domain = addr.rpartition("@")
    if not at or not local or len(local.encode()) > 64 or not _LOCAL.match(local):
        return ""
    try:
        domain = to_alabel(domain)
    except BadName:
        return ""
    return f"{local}@{domain}" if _ADDR.match(f"x@{domain}") else ""


def verified_destinations(ctx: "EvalContext", res: DmarcResult, addrs: list[str], orgs: Any) -> list[str]:
    """Keep addresses in the policy domain's organization, and external ones whose domain
    publishes `<policy-domain>._report._dmarc.<dest>` (RFC 7489 §7.1): otherwise anyone
    could have reports about us sent to a third party."""
    out = []
    dns = ctx.services.get("dns")
    for addr in addrs:
        dest = addr.rpartition("@")[2].lower()
        try:
            if orgs.aligned(dest, res.policy_domain, False):
                out.append(addr)
                continue
            texts = dns.lookup(f"{res.policy_domain}._report._dmarc.{dest}", "TXT")
        except Exception:  # noqa: BLE001 - an unverifiable destination gets no report
            continue
        if any(t.strip().startswith("v=DMARC1") for t in texts):
            out.append(addr)
    return out


def wants_report(res: DmarcResult) -> bool:
    """Apply `fo` (RFC 7489 §6.3): 0 both failed, 1 either failed, d DKIM failed, s SPF failed."""
    rec = res.record
    if rec is None or res.status.value in ("off", "temperror", "nofrom", "norecord"):
        return False
    fo = set(rec.fo)
    if "0" in fo and res.result == "fail":
        return True
    if "1" in fo and (not res.spf_aligned or not res.dkim_aligned):
        return True
    if "d" in fo and res.dkim is not None and any(s.status is DkimStatus.FAIL for s in res.dkim.signatures):
        return True
    return "s" in fo and res.spf is not None and res.spf.result == "fail"


def is_report_or_auto(headers: list[tuple[str, str]], sender: str, our_sender: str) -> bool:
    """True for messages we must never report on: reports, auto-generated mail, our own mail."""
    for name, value in headers:
        low = name.strip().lower()
        if low == "content-type" and "report" in value.lower():
            return True
        if low == "auto-submitted" and value.strip().lower() != "no":
            return True
    return bool(sender) and sender.lower() == our_sender.lower()


def _identity_alignment(res: DmarcResult) -> str:
    aligned = [m for m, ok in (("dkim", res.dkim_aligned), ("spf", res.spf_aligned)) if ok]
    return ", ".join(aligned) or "none"


def _utf8(text: str) -> bytes:
    # Header text from the network may hold undecodable bytes (kept as surrogates): they
    # become U+FFFD, so the report itself is always valid UTF-8 (RFC 6532).
    return text.encode("utf-8", "replace") if not text.isascii() else text.encode("ascii")


def _part(content_type: str, body: bytes) -> bytes:
    cte = "7bit" if body.isascii() else "8bit"
    return f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode() + body


def build_report(ctx: "EvalContext", res: DmarcResult, sender: str, rcpts: list[str], spf_dns: str = "",
                 delivery: str = "") -> bytes:
    """Return the auth-failure report (RFC 6591, CRLF) for the current message.

    ASCII throughout when it can be; with a UTF-8 address or UTF-8 original headers the
    report is an RFC 6532 message (raw UTF-8 header fields, the original header block as
    `message/global-headers`, RFC 6533), which `send` submits with SMTPUTF8.
    """
    txn = ctx.txn
    assert txn is not None
    now = datetime.fromtimestamp(ctx.services.clock(), timezone.utc)
    client = ctx.conn.client.address or "127.0.0.1"
    ar = build_header(ctx, [r for r in [dmarc_result(res)] if r is not None])
    fields = [("Feedback-Type", "auth-failure"), ("User-Agent", USER_AGENT), ("Version", "1"),
              ("Auth-Failure", "dmarc"), ("Authentication-Results", ar),
              ("Identity-Alignment", _identity_alignment(res))]
    if delivery:
        fields.append(("Delivery-Result", delivery))
    sigs = res.dkim.signatures if res.dkim is not None else ()
    if sigs:
        sig = next((s for s in sigs if s.domain == res.from_domain), sigs[0])
        fields += [("DKIM-Domain", sig.domain), ("DKIM-Identity", sig.identity), ("DKIM-Selector", sig.selector)]
    if res.spf is not None:
        fields.append(("SPF-DNS", spf_dns or f"txt : {res.spf.domain} : (not retrieved)"))
    if txn.queue_id:
        fields.append(("Original-Envelope-Id", txn.queue_id))
    fields += [("Original-Mail-From", txn.sender or "<>"), ("Arrival-Date", _email_utils.format_datetime(now)),
               ("Source-IP", client), ("Reported-Domain", res.from_domain)]
    for r in txn.accepted_recipients[:20]:
        fields.append(("Original-Rcpt-To", r.address))
    feedback = _utf8("".join(f"{n}: {clean_line(v)}\r\n" for n, v in fields))
    original = _utf8("".join(f"{clean_line(n)}:{'' if v[:1] in (' ', chr(9)) else ' '}"
                             f"{v.replace(chr(13), '').replace(chr(10), chr(13) + chr(10))}\r\n"
                             for n, v in txn.headers))
    boundary = "=_aclmilter_" + uuid.uuid4().hex
    head = [("From", sender), ("To", ", ".join(rcpts)),
            ("Subject", f"DMARC failure report for {res.from_domain}"), ("Date", _email_utils.format_datetime(now)),
            ("Message-ID", _email_utils.make_msgid(domain=_ascii_domain(sender))), ("Auto-Submitted", "auto-generated"),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/report; report-type=feedback-report; boundary="{boundary}"')]
    text = (f"This is an authentication failure report for a message received from IP {client} on "
            f"{_email_utils.format_datetime(now)}.\r\nFrom domain: {res.from_domain}; DMARC result: {res.result}.\r\n")
    parts = [_part("text/plain; charset=us-ascii", text.encode("ascii", "replace")),
             _part("message/feedback-report", feedback),
             _part("text/rfc822-headers" if original.isascii() else "message/global-headers", original)]
    out = _utf8("".join(f"{n}: {clean_line(v)}\r\n" for n, v in head)) + b"\r\n"
    out += b"This is a MIME-formatted message.\r\n"
    for part in parts:
        out += f"\r\n--{boundary}\r\n".encode() + part
    return out + f"\r\n--{boundary}--\r\n".encode()


def _ascii_domain(address: str) -> str | None:
    domain = address.rpartition("@")[2]
    try:
        return to_alabel(domain) if domain else None
    except BadName:
        return None


def _spf_dns(ctx: "EvalContext", res: DmarcResult) -> str:
    """`txt : <domain> : "<v=spf1 record>"` for SPF-DNS, from the (cached) DNS service."""
    if res.spf is None or not res.spf.domain:
        return ""
    try:
        texts = ctx.services.get("dns").lookup(res.spf.domain, "TXT")
    except Exception:  # noqa: BLE001 - a missing SPF-DNS detail never stops a report
        return ""
    spf = [t for t in texts if t.lower().startswith("v=spf1")]
    return f'txt : {res.spf.domain} : "{clean_line(spf[0])}"' if spf else f"txt : {res.spf.domain} : (none)"


def send(host_port: str, sender: str, rcpts: list[str], data: bytes, timeout: float) -> None:
    """Send over SMTP; raises smtplib/OS errors for the caller to log.

    A UTF-8 address or a UTF-8 report is submitted with SMTPUTF8 (RFC 6531) and
    BODY=8BITMIME; a relay that does not offer SMTPUTF8 gets nothing (SMTPNotSupportedError).
    """
    host, _, port = host_port.rpartition(":")
    international = not (sender.isascii() and all(r.isascii() for r in rcpts) and data.isascii())
    with smtplib.SMTP(host.strip("[]"), int(port), timeout=timeout) as smtp:
        options: list[str] = []
        if international:
            smtp.ehlo_or_helo_if_needed()
            if not smtp.has_extn("smtputf8"):
                raise smtplib.SMTPNotSupportedError("the relay does not offer SMTPUTF8")
            options = ["SMTPUTF8"] + (["BODY=8BITMIME"] if smtp.has_extn("8bitmime") else [])
        smtp.sendmail(sender, rcpts, data, mail_options=options)


@registry.eom_hook("dmarc_forensic", phase="after_data", order=60,
                   wanted=lambda policy: policy.uses_control("dmarc_enable_forensic"))
def forensic_hook(ctx: "EvalContext", decision: Any) -> None:
    """Send a failure report when enabled by control and the record asks for one."""
    txn = ctx.txn
    if txn is None or ctx.mode.simulate or not ctx.has_result("dmarc"):
        return
    if "dmarc_enable_forensic" not in txn.controls and "dmarc_enable_forensic" not in ctx.conn.controls:
        return
    res: DmarcResult = ctx.result("dmarc")
    rcpts = ruf_addresses(res)
    if not rcpts or not wants_report(res):
        return
    host = primary_hostname(ctx)
    sender = str(ctx.setting("dmarc_forensic_sender") or f"do-not-reply@{host}")
    if is_report_or_auto(txn.headers, txn.sender, sender):
        return
    limit = ctx.setting("dmarc_forensic_rate")
    limiter: RateLimiter = ctx.services.get("dmarc_forensic_limiter")
    if not limiter.allow(res.from_domain, 20 if limit is None else int(limit), ctx.services.clock()):
        log.info("DMARC failure report for %s suppressed by rate limit", res.from_domain)
        return
    from .dmarc_discovery import OrgDomains   # late import keeps module start-up light
    dns = ctx.services.get("dns")
    orgs = OrgDomains(ctx.setting("dmarc_discovery") or "rfc7489", lambda n: list(dns.lookup(n, "TXT")),
                      ctx.services.get("dmarc_psl"))
    rcpts = verified_destinations(ctx, res, rcpts, orgs)
    if not rcpts:
        return
    result = getattr(getattr(decision, "result", None), "value", "ok")
    delivery = {"fail": "reject", "drop": "reject", "discard": "other", "defer": "other",
                "error": "other"}.get(result, "delivered")
    try:
        data = build_report(ctx, res, sender, rcpts, _spf_dns(ctx, res), delivery)
        send(str(ctx.setting("dmarc_forensic_smtp") or "127.0.0.1:25"), sender, rcpts, data,
             float(ctx.setting("dmarc_forensic_timeout") or 10.0))
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        log.warning("DMARC failure report for %s not sent: %s", res.from_domain, exc)
        ctx.log_lines.append(f"DMARC failure report not sent: {clean_line(str(exc))}")
