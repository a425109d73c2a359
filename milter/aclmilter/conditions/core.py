"""Core registry entries: general settings, Exim's basic conditions and modifiers, core variables."""

from __future__ import annotations

import re
import time

from .. import lists, plugs, registry
from ..actions import HeaderRemove, RecipientAdd, has_crlf, queue_header_text, split_header_text
from ..context import EvalContext, is_acl_variable
from ..errors import ExpansionFailed, LookupDefer, SyntaxProblem
from ..hostname import primary_hostname
from ..outcome import Result
from ..registry import ArgMode
from ..stages import ALL, BEFORE_DATA, MESSAGE, Stage
from .. import validators as st

# ---- settings ------------------------------------------------------------------------------
registry.setting("authserv_id", st.optional_text, None,
                 "authserv-id of our Authentication-Results header; A-R headers carrying it are removed")
registry.setting("primary_hostname", st.optional_text, None,
                 "our host name (`@` in lists, reports, Received-SPF); default: the MTA's `j` macro, "
                 "else socket.getfqdn()")
registry.setting("on_internal_error", st.choice("tempfail", "accept", "reject"), "tempfail",
                 "what a message gets when aclmilter itself fails")
registry.setting("enhanced_status_codes", st.choice("add", "as_given"), "add",
                 "add: a refusal whose message gives no X.Y.Z gets 5.7.1/4.7.1 (what Postfix's own "
                 "refusals carry); as_given: the reply carries only what the message gives, as Exim")
registry.setting("split_long_replies", st.boolean, False,
                 "cut a refusal text longer than 75 characters into a multi-line reply at spaces, as Exim "
                 "does (import-exim turns it on)")
registry.setting("dry_run", st.boolean, False,
                 "monitor mode: every header is added, nothing is refused, discarded, quarantined or "
                 "re-routed (docs/mta.md)")
registry.setting("dry_run_header", st.optional_text, "X-ACLMilter-Dry-Run",
                 "header describing the would-be decision in dry-run mode (empty: none)")
registry.setting("trusted_authserv_ids", st.string_list, (), "upstream authserv-ids whose A-R results we trust")
registry.setting("body_spool_threshold", st.number(0, 1 << 30, integer=True), 1 << 20,
                 "bodies larger than this many bytes are spooled to a temporary file")
registry.setting("max_delay", st.number(0, 300), 25.0, "upper bound for the `delay` modifier, seconds")

# ---- helpers -------------------------------------------------------------------------------
_TRUE = {"yes", "true"}
_FALSE = {"", "no", "false"}


def condition_value(text: str) -> bool:
    """Exim's `condition =` truth: ""/0/no/false false; non-zero/yes/true true; else error."""
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    if re.fullmatch(r"[-+]?\d+", t):
        return int(t) != 0
    raise ExpansionFailed(f"invalid \"condition\" value \"{text}\"")


def _bool_result(b: bool) -> Result:
    return Result.OK if b else Result.FAIL


def _match(ctx: EvalContext, spec: lists.ListSpec, subject: str | None, data_var: str | None = None) -> Result:
    ctx.locals.pop("list_data", None)
    rc = lists.match(ctx, spec, subject)
    if rc is Result.OK and data_var and "list_data" in ctx.locals:
        ctx.locals[data_var] = ctx.locals["list_data"]
    return rc


RCPT_STAGES = Stage.RCPT | Stage.DELIVER
NOT_CONNECT = ALL & ~Stage.CONNECT
NOT_CONNECT_HELO = ALL & ~(Stage.CONNECT | Stage.HELO)


# ---- list conditions -----------------------------------------------------------------------
@registry.condition("hosts", ALL, arg=ArgMode.LIST, list_kind="host")
def _hosts(ctx: EvalContext, spec: lists.ListSpec) -> Result:
    """The client host (address, verified name) is in the host list.

    Returns OK when it matches, FAIL when not; DEFER when a host name (forward or reverse
    DNS) or a lookup cannot be resolved now (unless +ignore_defer/+include_defer); ERROR
    when a list item cannot be expanded."""
    return _match(ctx, spec, None, "host_data")   # None: the connection's client (IP and name)


@registry.condition("domains", RCPT_STAGES, arg=ArgMode.LIST, list_kind="domain")
def _domains(ctx: EvalContext, spec: lists.ListSpec) -> Result:
    """The current recipient's domain is in the domain list.

    Returns OK when it matches, FAIL when not; DEFER when a list item's lookup (DNS, Redis,
    a file) cannot answer now; ERROR when a list item cannot be expanded."""
    return _match(ctx, spec, ctx.rcpt.domain if ctx.rcpt else "", "domain_data")


@registry.condition("local_parts", RCPT_STAGES, arg=ArgMode.LIST, list_kind="localpart")
def _local_parts(ctx: EvalContext, spec: lists.ListSpec) -> Result:
    """The current recipient's local part is in the local-part list.

    Returns OK when it matches, FAIL when not; DEFER when a list item's lookup (DNS, Redis,
    a file) cannot answer now; ERROR when a list item cannot be expanded."""
    return _match(ctx, spec, ctx.rcpt.local_part if ctx.rcpt else "", "local_part_data")


@registry.condition("recipients", RCPT_STAGES, arg=ArgMode.LIST, list_kind="address")
def _recipients(ctx: EvalContext, spec: lists.ListSpec) -> Result:
    """The current recipient address is in the address list.

    Returns OK when it matches, FAIL when not; DEFER when a list item's lookup (DNS, Redis,
    a file) cannot answer now; ERROR when a list item cannot be expanded."""
    return _match(ctx, spec, ctx.rcpt.address if ctx.rcpt else "", "recipient_data")


@registry.condition("senders", MESSAGE, arg=ArgMode.LIST, list_kind="address")
def _senders(ctx: EvalContext, spec: lists.ListSpec) -> Result:
    """The envelope sender is in the address list (`senders = :` matches <>).

    Returns OK when it matches, FAIL when not; DEFER when a list item's lookup (DNS, Redis,
    a file) cannot answer now; ERROR when a list item cannot be expanded."""
    return _match(ctx, spec, ctx.txn.sender if ctx.txn else "", "sender_data")


@registry.condition("sender_domains", MESSAGE, arg=ArgMode.LIST, list_kind="domain")
def _sender_domains(ctx: EvalContext, spec: lists.ListSpec) -> Result:
    """The sender's domain (empty for <>) is in the domain list.

    Returns OK when it matches, FAIL when not; DEFER when a list item's lookup (DNS, Redis,
    a file) cannot answer now; ERROR when a list item cannot be expanded."""
    sender = ctx.txn.sender if ctx.txn else ""
    return _match(ctx, spec, sender.rpartition("@")[2].lower() if "@" in sender else "", "domain_data")


@registry.condition("authenticated", NOT_CONNECT_HELO, arg=ArgMode.LIST, list_kind="string")
def _authenticated(ctx: EvalContext, spec: lists.ListSpec) -> Result:
    """The client authenticated (SMTP AUTH) with a mechanism in the list; false if not authenticated.

    Returns OK when it matches, FAIL when not; DEFER when a list item's lookup (DNS, Redis,
    a file) cannot answer now; ERROR when a list item cannot be expanded."""
    if not ctx.conn.auth_authen:
        return Result.FAIL
    return _match(ctx, spec, ctx.conn.auth_type or ctx.conn.auth_authen)


@registry.condition("encrypted", NOT_CONNECT, arg=ArgMode.LIST, list_kind="string")
def _encrypted(ctx: EvalContext, spec: lists.ListSpec) -> Result:
    """The session uses TLS with a cipher in the list; false without TLS.

    Returns OK when it matches, FAIL when not; DEFER when a list item's lookup (DNS, Redis,
    a file) cannot answer now; ERROR when a list item cannot be expanded."""
    if not ctx.conn.tls_cipher:
        return Result.FAIL
    return _match(ctx, spec, ctx.conn.tls_cipher)


# ---- expanded conditions -------------------------------------------------------------------
@registry.condition("condition", ALL)
def _condition(ctx: EvalContext, text: str) -> Result:
    """The expanded string is true (yes/true/non-zero) or false (""/no/false/0); any other
    value DEFERs, as in Exim ("assumed to be an error... the ACL returns defer"), so under
    `warn` the statement is skipped and the ACL goes on."""
    try:
        return _bool_result(condition_value(text))
    except ExpansionFailed as exc:
        raise LookupDefer(str(exc)) from None


def _parse_acl(text: str) -> tuple[str, tuple[str, ...]]:
    words = text.split()
    if not words:
        raise SyntaxProblem("acl: an ACL name is required")
    if len(words) > 10:
        raise SyntaxProblem("acl: at most 9 arguments")
    return words[0], tuple(words[1:])


@registry.condition("acl", ALL, parse=_parse_acl)
def _acl(ctx: EvalContext, value: tuple[str, tuple[str, ...]]) -> Result:
    """Run a named ACL: accept -> true, deny -> false, defer -> defer ($acl_arg1..9 set).

    Returns OK when it accepts, FAIL when it denies, DEFER when it defers, DISCARD/DROP when
    it discards or drops; ERROR beyond 20 levels of nesting or when it errs."""
    return plugs.run_nested_acl(ctx, value[0], list(value[1]))   # the engine, above us


# ---- modifiers -----------------------------------------------------------------------------
@registry.modifier("message", ALL, arg=ArgMode.DEFERRED)
def _message(ctx: EvalContext, value: object) -> Result:
    """SMTP reply text used when the ACL decides (expanded late).

    Returns OK, never DEFER: the text is expanded only when the statement decides."""
    return Result.OK


@registry.modifier("log_message", ALL, arg=ArgMode.DEFERRED)
def _log_message(ctx: EvalContext, value: object) -> Result:
    """Log text used when the ACL decides (expanded late).

    Returns OK, never DEFER: the text is expanded only when the statement decides."""
    return Result.OK


@registry.modifier("endpass", Stage(ALL), arg=ArgMode.RAW)
def _endpass(ctx: EvalContext, value: object) -> Result:
    """Legacy boundary in accept/discard: a failure after it denies.

    Returns OK, never DEFER."""
    return Result.OK


@registry.modifier("logwrite", ALL)
def _logwrite(ctx: EvalContext, text: str) -> Result:
    """Write a log line now, every time it is reached.

    Returns OK; DEFER when a lookup in its expansion cannot answer now; ERROR when the
    expansion fails."""
    text = re.sub(r"^:[a-z,]*:\s*", "", text)
    ctx.log_lines.append(text.replace("\n", " "))
    return Result.OK


@registry.modifier("continue", ALL)
def _continue(ctx: EvalContext, text: str) -> Result:
    """Expand for side effects only.

    Returns OK; DEFER when a lookup in its expansion cannot answer now; ERROR when the
    expansion fails."""
    return Result.OK


def _parse_set(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise SyntaxProblem("set: `acl_c_name = value` or `acl_m_name = value` expected")
    if not is_acl_variable(name):
        raise SyntaxProblem(f"set: {name!r} is not an ACL variable (acl_c.../acl_m...)")
    return name, value.strip()


@registry.modifier("set", ALL, parse=_parse_set)
def _set(ctx: EvalContext, value: tuple[str, str]) -> Result:
    """Set an acl_c* (connection) or acl_m* (message) variable.

    Returns OK; DEFER when a lookup in its expansion cannot answer now; ERROR when the
    expansion fails."""
    ctx.set_var(*value)
    return Result.OK


def _parse_control(text: str) -> tuple[str, str]:
    name, _, options = text.strip().partition("/")
    if not name:
        raise SyntaxProblem("control: a control name is required")
    return name, options


@registry.modifier("control", ALL, parse=_parse_control)
def _control(ctx: EvalContext, value: tuple[str, str]) -> Result:
    """Set a control (see `aclmilter policy show` for the list).

    Returns OK; DEFER when a lookup in its expansion cannot answer now; ERROR when the
    expansion fails
    or names an unknown control."""
    name, options = value
    ctl = registry.TABLES.controls.get(name)
    if ctl is None:
        raise ExpansionFailed(f"unknown control {name!r}")
    if not ctl.stages & ctx.stage:
        raise ExpansionFailed(f"control {name!r} is not allowed in the {ctx.stage.key} ACL")
    ctl.run(ctx, options)
    return Result.OK


_TIME_RE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")


def parse_time(text: str) -> float:
    """Exim time interval `[Nw][Nd][Nh][Nm][Ns]` (a bare number means seconds here) -> seconds."""
    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    m = _TIME_RE.match(t)
    if not t or not m:
        raise SyntaxProblem(f"bad time interval {text!r}")
    w, d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return float(((w * 7 + d) * 24 + h) * 3600 + mi * 60 + s)


@registry.modifier("delay", ALL, parse=parse_time)
def _delay(ctx: EvalContext, seconds: float) -> Result:
    """Wait before answering (capped by settings.max_delay, below Postfix's milter timeouts).

    Returns OK; DEFER when a lookup in its expansion cannot answer now; ERROR when the
    expansion fails
    or is not a time; a simulation does not wait."""
    cap = float(ctx.setting("max_delay") or 0)
    wait = min(seconds, cap)
    ctx.note("-", f"delay {wait:g}s" + (" (simulation: not waited)" if ctx.mode.simulate else ""))
    if not ctx.mode.simulate and wait > 0:
        time.sleep(wait)
    return Result.OK


@registry.modifier("add_header", MESSAGE)
def _add_header(ctx: EvalContext, text: str) -> Result:
    """Queue header lines (`:at_start:`, `:after_received:`, `:at_start_rfc:`, `:at_end:` prefixes).

    Returns OK; DEFER when a lookup in its expansion cannot answer now; ERROR when the
    expansion fails
    or the text would inject a line."""
    queue_header_text(ctx.txn.edits if ctx.txn is not None else None, text, "add_header")
    return Result.OK


@registry.modifier("remove_header", MESSAGE)
def _remove_header(ctx: EvalContext, text: str) -> Result:
    """Queue removal of headers by name (`:`-separated) or `^regex` on the whole header.

    Returns OK; DEFER when a lookup in its expansion cannot answer now; ERROR when the
    expansion fails
    or a regex is invalid."""
    if ctx.txn is None or ctx.txn.edits is None:
        raise ExpansionFailed("remove_header outside a message")
    for item in lists.split_text(text):
        if not item:
            continue
        if item.startswith("^"):
            try:
                re.compile(item)
            except re.error as exc:
                raise ExpansionFailed(f"remove_header: bad regex {item!r}: {exc}") from None
            ctx.txn.edits.header_removes.append(HeaderRemove(pattern=item, source="remove_header"))
        else:
            ctx.txn.edits.header_removes.append(HeaderRemove(name=item.rstrip(":"), source="remove_header"))
    return Result.OK


def _parse_address(text: str) -> str:
    addr = text.strip().strip("<>")
    if not addr or has_crlf(addr) or " " in addr or "@" not in addr:
        raise SyntaxProblem(f"redirect: {text!r} is not an address")
    return addr


@registry.modifier("redirect", Stage.DELIVER, parse=_parse_address)
def _redirect(ctx: EvalContext, address: str) -> Result:
    """Deliver this recipient to another address instead (keeps its ESMTP parameters).

    Returns OK; DEFER when a lookup in its expansion cannot answer now; ERROR when the
    expansion fails
    or the address is not usable."""
    rcpt = ctx.rcpt
    if rcpt is None or ctx.txn is None or ctx.txn.edits is None:
        raise ExpansionFailed("redirect outside the deliver ACL")
    if address.lower() != rcpt.address.lower():
        ctx.txn.edits.delete_recipient(rcpt.raw or f"<{rcpt.address}>", "redirect")
        if not any(a.address.lower() == address.lower() for a in ctx.txn.edits.rcpt_adds):
            ctx.txn.edits.rcpt_adds.append(RecipientAdd(address, rcpt.params, "redirect"))
        rcpt.vars["redirected_to"] = address
    return Result.OK


# ---- controls ------------------------------------------------------------------------------
@registry.control("no_multiline_responses", ALL)
def _no_multiline(ctx: EvalContext, options: str) -> None:
    """Send only the first line of multi-line replies for the rest of the connection."""
    ctx.conn.controls.add("no_multiline_responses")


@registry.control("quarantine", MESSAGE & ~Stage.DELIVER, takes_options=True)
def _quarantine(ctx: EvalContext, options: str) -> None:
    """Put the message on hold in the MTA (Postfix hold queue) with the given reason."""
    if ctx.txn is not None and ctx.txn.edits is not None:
        ctx.txn.edits.quarantine = options.replace("\n", " ") or "quarantined by policy"


# ---- variables -----------------------------------------------------------------------------
def _sender_domain(ctx: EvalContext) -> str:
    s = ctx.txn.sender if ctx.txn else ""
    return s.rpartition("@")[2] if "@" in s else ""


def _sender_local(ctx: EvalContext) -> str:
    s = ctx.txn.sender if ctx.txn else ""
    return s.rpartition("@")[0] if "@" in s else ""


_VARIABLES = {
    "sender_host_address": lambda c: c.conn.client.address,
    "sender_host_port": lambda c: c.conn.client.port,
    "sender_host_name": lambda c: c.conn.client.name,
    "sender_helo_name": lambda c: c.conn.helo,
    "received_ip_address": lambda c: c.conn.client.local_address,
    "received_port": lambda c: c.conn.client.local_port,
    "interface_address": lambda c: c.conn.client.local_address,
    "interface_port": lambda c: c.conn.client.local_port,
    "primary_hostname": primary_hostname,
    "smtp_command": lambda c: c.smtp_command,
    "authenticated_id": lambda c: c.conn.auth_authen,
    "sender_host_authenticated": lambda c: c.conn.auth_type if c.conn.auth_authen else "",
    "tls_in_cipher": lambda c: c.conn.tls_cipher,
    "tls_cipher": lambda c: c.conn.tls_cipher,
    "tls_in_ver": lambda c: c.conn.tls_version,
    "sender_address": lambda c: c.txn.sender if c.txn else "",
    "sender_address_domain": _sender_domain,
    "sender_address_local_part": _sender_local,
    "local_part": lambda c: c.rcpt.local_part if c.rcpt else "",
    "domain": lambda c: c.rcpt.domain if c.rcpt else "",
    "recipient": lambda c: c.rcpt.address if c.rcpt else "",
    "recipients": lambda c: ", ".join(r.address for r in c.txn.accepted_recipients)
    if c.txn and c.stage in (Stage.PREDATA, Stage.DATA) else "",
    "recipients_count": lambda c: str(len(c.txn.accepted_recipients)) if c.txn else "0",
    "rcpt_count": lambda c: str(len(c.txn.recipients)) if c.txn else "0",
    "rcpt_fail_count": lambda c: str(c.txn.rcpt_fail_count) if c.txn else "0",
    "rcpt_defer_count": lambda c: str(c.txn.rcpt_defer_count) if c.txn else "0",
    "message_size": lambda c: (str(c.txn.body.size + sum(len(n) + len(v) + 4 for n, v in c.txn.headers))
                               if c.txn and c.stage in (Stage.DATA, Stage.DELIVER) else
                               str(c.txn.size_param) if c.txn else "-1"),
    "message_exim_id": lambda c: c.txn.queue_id if c.txn else "",
    "queue_id": lambda c: c.txn.queue_id if c.txn else "",
    "message_id": lambda c: (c.txn.header_values("Message-ID") or [""])[0].strip() if c.txn else "",
    "client_name": lambda c: c.conn.client.name,
    "daemon_name": lambda c: c.conn.client.daemon_name,
    "host_data": lambda c: c.locals.get("host_data", ""),
    "domain_data": lambda c: c.locals.get("domain_data", ""),
    "local_part_data": lambda c: c.locals.get("local_part_data", ""),
    "sender_data": lambda c: c.locals.get("sender_data", ""),
    "recipient_data": lambda c: c.locals.get("recipient_data", ""),
    "acl_verify_message": lambda c: c.cond_message or "",
}

_DOCS = {
    "sender_host_address": "real client IP (after PROXY unwrapping), no IPv6: prefix",
    "received_ip_address": "address the client connected to (for a proxied session: the proxy's target)",
    "message_exim_id": "the MTA queue id (Postfix: known from RCPT on)",
}

for _name, _fn in _VARIABLES.items():
    registry.add_variable(_name, _fn, _DOCS.get(_name, ""))

# BEFORE_DATA is re-exported for feature modules that register pre-data controls.
__all__ = ["BEFORE_DATA", "condition_value", "parse_time", "queue_header_text", "split_header_text"]
