# SPDX-License-Identifier: GPL-3.0-or-later
"""SPF (RFC 7208) and best-guess SPF: evaluate pyspf through our DNS client, return typed facts.

The check answers: what is the SPF result for the MAIL FROM identity (or, for a null sender,
the HELO identity `postmaster@<helo>`) of this client address? It never picks an SMTP reply;
the policy does, through the `spf`/`spf_guess` conditions and the `$spf_*` variables.

pyspf routes every DNS query through the method `query.dns()`; its default implementation
calls the module global `spf.DNSLookup`. We subclass `spf.query` and give each query object
our shared, TTL-caching, deadline-aware client instead, so nothing is patched globally and
concurrent messages on different threads never share per-query state.

Results (SpfOutcome) carry the texts the policy may use: the header comment, the complete
`Received-SPF:` value (RFC 7208 §9.1), the SMTP comment for a rejection, and whether the
best-guess record was used. Every text is free of CR/LF and control characters.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import itertools
import logging
import re
import urllib.parse
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .. import lazy, registry
from ..hostname import primary_hostname
from ..lists.hosts import parse_ip
from ..clients.dns_cache import TtlCache
from ..clients.dns import DnsClient, DnsTempError
from ..clients.dns_names import BadName, to_alabel

# pyspf (which imports dnspython) and authres load when SPF first runs (lazy.py)
if TYPE_CHECKING:  # pragma: no cover  (the real modules for the type checker)
    import authres
    import spf as pyspf
    from ..context import EvalContext
else:
    pyspf = lazy.module("spf")
    authres = lazy.module("authres")

log = logging.getLogger("aclmilter.spf")

DEFAULT_GUESS_RECORD = "v=spf1 a/24 mx/24 ptr ?all"
DEFAULT_EXPLANATION_URL = "http://www.open-spf.org/Why"


class SpfResult(enum.Enum):
    """The seven RFC 7208 results (the words `$spf_result` and the `spf` condition use)."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    PERMERROR = "permerror"
    TEMPERROR = "temperror"


class Identity(enum.Enum):
    """Which identity was checked (RFC 7208 §2.3, §2.4)."""

    MAILFROM = "mailfrom"
    HELO = "helo"


@dataclass(frozen=True)
class SpfOutcome:
    """The facts of one SPF evaluation, plus the texts derived from them.

    `domain` is the A-label domain checked ("" when there was none); `sender` the identity
    address (`postmaster@<helo>` for the HELO identity); `mechanism` the matching mechanism
    when pyspf knows it; `explanation` the domain's own exp= text (sanitised) for a fail;
    `problem` the reason of a perm/temp error. `check` is "spf" or "spf_guess"; `seq` orders
    evaluations inside the process so the variables can show the latest one (Exim: the last
    spf/spf_guess condition evaluated sets the variables).
    """

    result: SpfResult
    identity: Identity
    domain: str
    sender: str
    envelope_from: str
    client_ip: str
    helo: str
    receiver: str
    mechanism: str = ""
    explanation: str = ""
    problem: str = ""
    guessed: bool = False
    check: str = "spf"
    seq: int = 0
    header_comment: str = ""
    received: str = ""
    smtp_comment: str = ""

    def renumbered(self, seq: int) -> "SpfOutcome":
        """The same outcome with another `seq` (a cache hit counts as a new evaluation).

        A shallow copy of the instance dict: dataclasses.replace re-runs __init__ and costs
        several times more, on every message of the default policy."""
        twin = object.__new__(SpfOutcome)
        twin.__dict__.update(self.__dict__)
        twin.__dict__["seq"] = seq
        return twin

    @property
    def header_name(self) -> str:
        """`X-SPF-Guess` when the best-guess record decided, else `Received-SPF`."""
        return "X-SPF-Guess" if self.guessed else "Received-SPF"


_SEQ = itertools.count(1)   # next() on itertools.count is atomic under the GIL

# ---- texts ---------------------------------------------------------------------------------

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean(text: str, limit: int = 256) -> str:
    """Return `text` on one line: control characters (CR, LF, NUL, ...) become one space; cut to `limit`."""
    t = _CONTROL.sub(" ", text).strip()
    return t if len(t) <= limit else t[: limit - 3] + "..."


def _kv(value: str) -> str:
    """A Received-SPF key-value value: dot-atom as is, anything else as a quoted-string."""
    v = clean(value)
    if _DOT_ATOM.match(v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    """Escape text for an RFC 5322 comment (parentheses and backslash become quoted-pairs)."""
    return clean(text, 512).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def header_comment(o: SpfOutcome) -> str:
    """The human-readable sentence of `$spf_header_comment` for an outcome."""
    who = ("best guess record for domain of " if o.guessed else "domain of ") + (o.sender or "<>")
    ip = o.client_ip or "unknown"
    texts = {
        SpfResult.PASS: f"{who} designates {ip} as permitted sender",
        SpfResult.FAIL: f"{who} does not designate {ip} as permitted sender",
        SpfResult.SOFTFAIL: f"transitioning {who} does not designate {ip} as permitted sender",
        SpfResult.NEUTRAL: f"{ip} is neither permitted nor denied by {who}",
        SpfResult.NONE: f"{who} does not designate permitted sender hosts",
        SpfResult.PERMERROR: f"permanent error in processing {who}: {o.problem or 'unknown'}",
        SpfResult.TEMPERROR: f"temporary error in processing {who}: {o.problem or 'unknown'}",
    }
    return clean(f"{o.receiver}: {texts[o.result]}", 512)


def received_value(o: SpfOutcome) -> str:
    """The complete `Received-SPF:` (or `X-SPF-Guess:`) header value, RFC 7208 §9.1, one line."""
    pairs = [("client-ip", o.client_ip), ("envelope-from", o.envelope_from)]
    if o.helo:
        pairs.append(("helo", o.helo))
    if o.problem and o.result in (SpfResult.PERMERROR, SpfResult.TEMPERROR):
        pairs.append(("problem", o.problem))
    pairs += [("receiver", o.receiver), ("identity", o.identity.value)]
    if o.mechanism:
        pairs.append(("mechanism", o.mechanism))
    kv = "; ".join(f"{k}={_kv(v)}" for k, v in pairs)
    return f"{o.result.value} ({_comment(header_comment(o))}) {kv};"


def smtp_comment(o: SpfOutcome, url: str = DEFAULT_EXPLANATION_URL) -> str:
    """The text of `$spf_smtp_comment`: why a fail/softfail happened, for the SMTP reply.

    The domain's own explanation (exp=) wins; otherwise an openspf-style pointer. A guessed
    result never mentions SPF (the best guess is not SPF, and must not be blamed on it).
    """
    if o.result not in (SpfResult.FAIL, SpfResult.SOFTFAIL, SpfResult.PERMERROR, SpfResult.TEMPERROR):
        return ""
    if o.guessed:
        if o.result in (SpfResult.FAIL, SpfResult.SOFTFAIL):
            return clean(f"{o.client_ip} is not a known mail server of {o.domain or 'the sender domain'}")
        return ""
    if o.result in (SpfResult.PERMERROR, SpfResult.TEMPERROR):
        return clean(f"SPF {o.result.value} for {o.domain or '<>'}: {o.problem or 'unknown'}")
    if o.explanation:
        return clean(o.explanation)
    if not url:
        return ""
    query = urllib.parse.urlencode({"id": o.sender, "ip": o.client_ip, "receiver": o.receiver}, safe="@:")
    return clean(f"Please see {url}?{query}", 512)


def authres_fragment(result: SpfOutcome) -> authres.SPFAuthenticationResult:
    """The `spf=` part of our Authentication-Results header (RFC 8601 §2.7.2), as Exim writes it.

    smtp.mailfrom carries the sender domain; for a null sender, smtp.helo carries the HELO name.
    A guessed result says so in its comment.
    """
    comment = "best guess record for domain" if result.guessed else None
    if result.identity is Identity.MAILFROM and result.domain:
        return authres.SPFAuthenticationResult(result=result.result.value, result_comment=comment,
                                               smtp_mailfrom=result.domain)
    helo = _safe_helo(result.helo)
    if helo:
        return authres.SPFAuthenticationResult(result=result.result.value, result_comment=comment,
                                               smtp_helo=helo)
    return authres.SPFAuthenticationResult(result=result.result.value, result_comment=comment,
                                           smtp_mailfrom="<>")


def _safe_helo(helo: str) -> str:
    """A HELO name fit for a header property: A-label form, or "" when it is not a domain."""
    try:
        name = to_alabel(helo)
    except BadName:
        return ""
    return name if _DOT_ATOM.match(name) else ""


# ---- evaluation ----------------------------------------------------------------------------

_PYSPF_RESULTS = {r.value: r for r in SpfResult}
#: Results a record's mechanisms (or its default) produce; the others have no mechanism.
_MATCHABLE = (SpfResult.PASS, SpfResult.FAIL, SpfResult.SOFTFAIL, SpfResult.NEUTRAL)


def plain_ip(address: str) -> str:
    """The client address SPF evaluates and shows: an IPv4-mapped IPv6 address as IPv4
    (`::ffff:192.0.2.1` -> `192.0.2.1`, RFC 7208 §5), anything else unchanged."""
    ip = parse_ip(address)
    return str(ip) if isinstance(ip, ipaddress.IPv4Address) else address


@functools.cache
def _query_class() -> type:
    """pyspf's query with our DNS, defined at first use (pyspf is imported then, not by
    `aclmilter check`)."""

    class _Query(pyspf.query):
        """A pyspf query whose DNS goes through our client, bounded by one deadline."""

        def __init__(self, client: DnsClient, deadline: float, **kw: Any) -> None:
            self._client = client
            self._deadline = deadline
            super().__init__(**kw)

        def dns(self, name: Any, qtype: str, cnames: Any = None, ignore_void: bool = False) -> list:
            """Answer pyspf's query: a list of values in pyspf's shapes; count void lookups (RFC 7208 §4.6.4).

            Raises pyspf.TempError for timeouts/SERVFAIL (-> temperror) and pyspf.PermError when the
            void-lookup limit is exceeded (-> permerror).
            """
            raw = str(name or "")
            text = raw.rstrip(".")
            if not text:
                if raw == ".":
                    return []   # the target of a null MX (RFC 7505): no address, not a lookup
                raise pyspf.PermError("empty domain name in a DNS query")
            if any(not 0 < len(label) < 64 for label in text.split(".")):
                return []   # cannot be a DNS name: no answer, and not a lookup at all
            if not text.isascii():
                # Our domains reach pyspf as A-labels, so non-ASCII here came from a UTF-8 local
                # part (%{l}, %{s}): RFC 8616 §4, such terms "do not match anything" -- no query.
                return []
            try:
                # literal: a macro may expand to spaces or `%` (RFC 7208 §7.3); the name is asked as is
                answer = self._client.query(text, qtype, self._deadline, literal=True)
            except DnsTempError as exc:
                raise pyspf.TempError(f"DNS {exc.reason.value} looking up {exc.qname} {qtype}") from None
            values = list(answer.values)
            if not values and not ignore_void:
                self.void_lookups += 1
                if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:
                    raise pyspf.PermError(f"void lookup limit of {pyspf.MAX_VOID_LOOKUPS} exceeded")
            return values

        def validated_ptrs(self) -> list:
            """The PTR names of the client that resolve back to it (RFC 7208 §5.5), at most 10.

            A DNS error while looking up one name's addresses skips that name (§5.5: "the domain
            name is skipped and the search continues"); pyspf itself turned it into temperror.
            """
            names = self.dns_ptr(self.i)[:pyspf.MAX_PTR]
            valid = []
            for ptr in names:
                try:
                    if self.cidrmatch(self.dns_a(ptr, self.A), self.cidrmax):
                        valid.append(ptr)
                except pyspf.TempError:
                    continue
            return valid

    return _Query


@dataclass(frozen=True)
class _Raw:
    result: SpfResult
    mechanism: str = ""
    explanation: str = ""
    problem: str = ""


def _run_pyspf(client: DnsClient, deadline: float, ip: str, sender: str, helo: str, receiver: str,
               record: str | None) -> _Raw:
    """Run pyspf once; every failure of pyspf itself becomes permerror (malformed data never raises)."""
    try:
        q = _query_class()(client, deadline, i=ip, s=sender, h=helo, receiver=receiver, strict=True)
        # An empty default explanation lets us tell the domain's own exp= text from pyspf's.
        q.set_default_explanation("")
        code, _smtp, expl = q.check(spf=record)
    except pyspf.TempError as exc:
        return _Raw(SpfResult.TEMPERROR, problem=clean(str(exc)))
    except pyspf.PermError as exc:
        return _Raw(SpfResult.PERMERROR, problem=clean(str(exc)))
    except Exception as exc:  # noqa: BLE001 - pyspf has crashed on odd records before (pyspf#15)
        log.warning("pyspf failed on %s from %s: %s", clean(sender), ip, clean(repr(exc)))
        return _Raw(SpfResult.PERMERROR, problem="unprocessable SPF record")
    result = _PYSPF_RESULTS.get(str(code), SpfResult.PERMERROR)
    problem = ""
    if result in (SpfResult.PERMERROR, SpfResult.TEMPERROR):
        # pyspf keeps the message and the offending term apart (q.prob, q.mech)
        mechs = getattr(q, "mech", None) or []
        problem = str(getattr(q, "prob", "") or expl or "unknown")
        if mechs:
            problem += f": {mechs[-1]}"
        problem = clean(problem)
    explanation = clean(str(expl or "")) if result in (SpfResult.FAIL, SpfResult.SOFTFAIL) else ""
    mechanism = clean(str(getattr(q, "mechanism", "") or ""))
    if not mechanism and result in _MATCHABLE:
        mechanism = "default"   # RFC 7208 §9.1: no mechanism matched
    return _Raw(result, mechanism, explanation, problem)


def _split_sender(address: str) -> tuple[str, str]:
    """Return (local part, domain); ("", "") when there is no '@' at all."""
    if "@" not in address:
        return "", ""
    local, _, domain = address.rpartition("@")
    return local, domain


def evaluate(client: DnsClient, *, ip: str, sender: str, helo: str, receiver: str,
             guess_record: str | None = None, explanation_url: str = DEFAULT_EXPLANATION_URL,
             check: str = "spf", results: "TtlCache | None" = None, results_ttl: float = 0.0) -> SpfOutcome:
    """Evaluate SPF for one transaction and return its outcome; never raises for DNS or record problems.

    Identity: MAIL FROM when `sender` is not empty, else HELO (`postmaster@<helo>`).
    With `guess_record`, a `none` result is re-evaluated against that record (Exim's spf_guess);
    a permerror of our own guess record says nothing about the domain and becomes neutral.
    All DNS work shares one deadline (`settings.dns.budget`).
    """
    # A warm cache answers a repeated transaction (same client, sender, HELO) with the whole
    # outcome, texts included: the default policy runs SPF on every message.
    outcome_key = ("outcome", ip, sender, helo, receiver, guess_record, explanation_url, check)
    if results is not None:
        cached = results.get(outcome_key)
        if cached is not None:
            return cached.renumbered(next(_SEQ))
    ip = plain_ip(ip)
    identity = Identity.MAILFROM if sender else Identity.HELO
    raw_address = sender if sender else (f"postmaster@{helo}" if helo else "")
    local, raw_domain = _split_sender(raw_address)
    domain, problem, invalid = "", "", ""
    if raw_address and not raw_domain:
        problem = "invalid sender address"   # Exim: an unusable sender is a permerror
    elif raw_domain:
        try:
            domain = to_alabel(raw_domain)   # RFC 8616: SPF works on A-labels
        except BadName as exc:
            invalid = clean(f"invalid domain: {exc}")
        if domain and "." not in domain:
            domain, invalid = "", "not a multi-label domain name"
    checked = f"{local}@{domain}" if domain else clean(raw_address)
    base: dict[str, Any] = dict(identity=identity, domain=domain, sender=clean(checked), envelope_from=clean(sender),
                client_ip=ip, helo=clean(helo), receiver=clean(receiver), check=check)

    if not ip:
        # Exim: no client address -> permerror (there is nothing to authorise)
        raw = _Raw(SpfResult.PERMERROR, problem="no client IP address")
    elif problem:
        raw = _Raw(SpfResult.PERMERROR, problem=problem)
    elif invalid:
        # RFC 7208 §4.3: a malformed domain (a label over 63 octets, an empty label, a single
        # label, no A-label form) gives "none" at once, without any DNS query
        raw = _Raw(SpfResult.NONE, problem=invalid)
    elif not domain:
        raw = _Raw(SpfResult.NONE, problem="no identity to check")
    else:
        deadline = client.deadline()

        # %{h} must expand to the A-label form of a U-label HELO name (RFC 8616 §4)
        helo_name = _safe_helo(helo) or helo

        def run(record: str | None) -> _Raw:
            return _run_pyspf(client, deadline, ip, checked, helo_name, receiver, record)

        raw = run(None)
        guessed = False
        if guess_record and raw.result is SpfResult.NONE:
            raw = run(guess_record)
            if raw.result is SpfResult.PERMERROR:
                raw = _Raw(SpfResult.NEUTRAL, raw.mechanism)
            guessed = True
        base["guessed"] = guessed
    outcome = _with_texts(SpfOutcome(result=raw.result, mechanism=raw.mechanism, explanation=raw.explanation,
                                     problem=raw.problem, seq=next(_SEQ), **base), explanation_url)
    if results is not None and results_ttl > 0 and outcome.result is not SpfResult.TEMPERROR:
        results.put(outcome_key, outcome, results_ttl)
    return outcome


def _with_texts(o: SpfOutcome, url: str) -> SpfOutcome:
    o = replace(o, header_comment=header_comment(o))
    return replace(o, received=received_value(o), smtp_comment=smtp_comment(o, url))


# ---- registered checks ---------------------------------------------------------------------


def _evaluate_ctx(ctx: "EvalContext", check: str, guess: bool) -> SpfOutcome:
    client: DnsClient = ctx.services.get("dns")
    settings = ctx.policy.settings      # read directly: this runs for every message
    record = (settings.get("spf_guess") or DEFAULT_GUESS_RECORD) if guess else None
    url = settings.get("spf_explanation_url")
    ttl = float(settings.get("spf_result_cache_ttl") or 0)
    receiver = primary_hostname(ctx)
    return evaluate(client, ip=ctx.conn.client.address, sender=ctx.txn.sender if ctx.txn else "",
                    helo=ctx.conn.helo, receiver=receiver, guess_record=record,
                    explanation_url=DEFAULT_EXPLANATION_URL if url is None else url, check=check,
                    results=ctx.services.get("spf_results") if ttl > 0 else None, results_ttl=ttl)


@registry.check("spf", scope="transaction")
def spf_check(ctx: "EvalContext") -> SpfOutcome:
    """SPF for the transaction's MAIL FROM (or HELO for <>): an SpfOutcome, temperror included."""
    return _evaluate_ctx(ctx, "spf", guess=False)


@registry.check("spf_guess", scope="transaction")
def spf_guess_check(ctx: "EvalContext") -> SpfOutcome:
    """Like `spf`, but a `none` result is replaced by the result of the best-guess record."""
    return _evaluate_ctx(ctx, "spf_guess", guess=True)


def latest(ctx: "EvalContext") -> SpfOutcome | None:
    """The most recent of the `spf` and `spf_guess` outcomes of this transaction, or None."""
    if ctx.txn is None:
        return None
    results = ctx.txn.results          # both checks are transaction-scoped (registered above)
    plain, guess = results.get("spf"), results.get("spf_guess")
    if plain is None or guess is None:
        return guess if plain is None else plain
    return plain if plain.seq > guess.seq else guess
