# SPDX-License-Identifier: GPL-3.0-or-later
"""The one DNS resolver of aclmilter: dnspython, configured from `settings.dns`, shared by all threads.

Every check (SPF, DKIM, DMARC, dnslists, host names) asks this module; nothing else calls
the system resolver. What it guarantees:

- names are converted to A-labels before a query (IDN sender domains work);
- each try waits at most `timeout` seconds, one query at most `lifetime` seconds, and a
  caller may pass a *deadline* (time.monotonic() value) that caps the query further, so a
  check's DNS work fits inside its per-message `budget`, well under Postfix's 30 s
  milter_command_timeout;
- a truncated UDP answer is retried over TCP (dnspython does this; proven by a test with a
  10 kB TXT set);
- answers, including "no such name" and "no data", are cached up to their TTL in one
  bounded, thread-safe cache;
- a timeout, SERVFAIL, REFUSED or exhausted budget is a DnsTempError (a LookupDefer), never
  an empty answer, so callers can tell "does not exist" from "could not find out".

When `settings.dns` is absent, dnspython reads /etc/resolv.conf (its documented default).
"""

from __future__ import annotations

import enum
import ipaddress
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .. import lazy
from ..validators import bounded_number
from ..errors import LookupDefer, SyntaxProblem
from .dns_cache import TtlCache
from .dns_names import BadName, cache_key, to_name
from .health import watched

# dnspython is imported when the first client is built, not by `aclmilter check` (lazy.py)
if TYPE_CHECKING:     # the real module for the type checker; at run time it loads on first use
    import dns.exception
    import dns.name
    import dns.rcode
    import dns.rdatatype
    import dns.resolver
else:
    dns = lazy.module("dns")

# ---- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nameserver:
    """One server to ask: an IP address (v4 or v6) and a port."""

    address: str
    port: int = 53

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class DnsSettings:
    """Validated `settings.dns`. An empty `nameservers` means: use /etc/resolv.conf."""

    nameservers: tuple[Nameserver, ...] = ()
    timeout: float = 2.0        # one try against one server
    lifetime: float = 5.0       # one query, all tries and servers together
    budget: float = 12.0        # all DNS work of one check evaluation (a deadline at call sites)
    cache_size: int = 10000     # entries in the shared answer cache
    max_ttl: int = 3600         # cap on how long any answer is cached
    max_negative_ttl: int = 600  # cap for NXDOMAIN/NODATA answers
    early: bool = True          # start lookups as soon as their names are known (dns_early.py)


def early_lookups_on(dns_setting: Any) -> bool:
    """Whether `settings.dns` (a DnsSettings, or None when the policy has none) lets lookups
    start before their check asks: on unless `early: false`."""
    return dns_setting is None or getattr(dns_setting, "early", True) is not False


#: record types already checked against dnspython (the check is for typos in our own code)
_CHECKED_TYPES: set[str] = set()

_DNS_KEYS = {"nameservers", "timeout", "lifetime", "budget", "cache_size", "max_ttl", "max_negative_ttl",
             "early"}

# Postfix aborts a milter command after milter_command_timeout (30 s by default); one check
# must leave room for the others and for the reply, so no budget may come close to it.
MAX_BUDGET = 25.0


def parse_nameserver(text: str) -> Nameserver:
    """Parse "IP", "IP:port" (IPv4) or "[IPv6]:port" / bare IPv6; raise SyntaxProblem otherwise."""
    t = str(text).strip()
    host, port = t, 53
    if t.startswith("["):
        close = t.find("]")
        if close < 0:
            raise SyntaxProblem(f"nameserver {t!r}: missing ']'")
        host, rest = t[1:close], t[close + 1:]
        if rest:
            if not rest.startswith(":"):
                raise SyntaxProblem(f"nameserver {t!r}: expected ':port' after ']'")
            port = _port(t, rest[1:])
    elif t.count(":") == 1:
        host, _, p = t.partition(":")
        port = _port(t, p)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SyntaxProblem(f"nameserver {t!r}: an IP address is expected (names would need a resolver)") from None
    return Nameserver(str(ip), port)


def _port(text: str, p: str) -> int:
    if not p.isdigit() or not 0 < int(p) < 65536:
        raise SyntaxProblem(f"nameserver {text!r}: bad port {p!r}")
    return int(p)


def _seconds(key: str, value: Any, low: float, high: float) -> float:
    return float(bounded_number(value, f"dns.{key}", low, high, unit="seconds"))


def _count(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SyntaxProblem(f"dns.{key}: an integer between {low} and {high} is expected")
    return value


def parse_dns_settings(raw: Any) -> DnsSettings:
    """Validate the `settings.dns` mapping; raise SyntaxProblem naming the bad key."""
    if raw is None:
        return DnsSettings()
    if isinstance(raw, DnsSettings):
        return raw
    if not isinstance(raw, dict):
        raise SyntaxProblem("dns: a mapping is expected (nameservers, timeout, lifetime, budget, ...)")
    unknown = sorted(set(map(str, raw)) - _DNS_KEYS)
    if unknown:
        raise SyntaxProblem(f"dns: unknown key {unknown[0]!r} (known: {', '.join(sorted(_DNS_KEYS))})")
    servers = raw.get("nameservers", [])
    if isinstance(servers, str):
        servers = [servers]
    if not isinstance(servers, list):
        raise SyntaxProblem("dns.nameservers: a list of addresses is expected")
    parsed = tuple(parse_nameserver(s) for s in servers)
    base = DnsSettings()
    timeout = _seconds("timeout", raw.get("timeout", base.timeout), 0.05, 30)
    lifetime = _seconds("lifetime", raw.get("lifetime", max(base.lifetime, timeout)), 0.05, MAX_BUDGET)
    budget = _seconds("budget", raw.get("budget", max(base.budget, lifetime)), 0.05, MAX_BUDGET)
    if lifetime < timeout:
        raise SyntaxProblem("dns.lifetime: must not be shorter than dns.timeout")
    if budget < lifetime:
        raise SyntaxProblem("dns.budget: must not be shorter than dns.lifetime")
    early = raw.get("early", base.early)
    if not isinstance(early, bool):
        raise SyntaxProblem("dns.early: true or false is expected")
    return DnsSettings(
        nameservers=parsed, timeout=timeout, lifetime=lifetime, budget=budget,
        cache_size=_count("cache_size", raw.get("cache_size", base.cache_size), 0, 10_000_000),
        max_ttl=_count("max_ttl", raw.get("max_ttl", base.max_ttl), 0, 7 * 86400),
        max_negative_ttl=_count("max_negative_ttl", raw.get("max_negative_ttl", base.max_negative_ttl), 0, 86400),
        early=early,
    )


# ---- typed answers -------------------------------------------------------------------------


class Status(enum.Enum):
    """What the DNS said about a name (all of these are final answers, not errors)."""

    FOUND = "found"          # records of the asked type exist
    NODATA = "nodata"        # the name exists, no records of this type
    NXDOMAIN = "nxdomain"    # the name does not exist
    BADNAME = "badname"      # the text cannot be a DNS name; nothing was sent


class TempReason(enum.Enum):
    """Why no answer could be had now (retrying later may help)."""

    TIMEOUT = "timeout"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    BUDGET = "budget"        # the caller's deadline had passed before or during the query
    FAILED = "failed"        # every server failed in some other way (bad replies, no config)


@dataclass(frozen=True)
class DnsAnswer:
    """A final DNS answer. `values` are typed per rdtype:

    A/AAAA: address text; MX: (preference, exchange without dot); PTR/CNAME/NS: name without
    dot; TXT/SPF: tuple of the record's character-strings as bytes; others: rdata text.
    """

    qname: str
    rdtype: str
    status: Status
    values: tuple = ()
    ttl: int = 0

    def texts(self) -> list[str]:
        """Record texts as `lookup()` returns them (TXT strings joined per record)."""
        out: list[str] = []
        for v in self.values:
            if self.rdtype in ("TXT", "SPF"):
                out.append(b"".join(v).decode("utf-8", "replace"))
            elif self.rdtype == "MX":
                out.append(f"{v[0]} {v[1]}")
            else:
                out.append(str(v))
        return out


class DnsTempError(LookupDefer):
    """The DNS could not answer now (timeout, SERVFAIL, REFUSED, budget spent)."""

    def __init__(self, qname: str, rdtype: str, reason: TempReason, detail: str = "") -> None:
        self.qname = qname
        self.rdtype = rdtype
        self.reason = reason
        self.detail = detail
        super().__init__(f"DNS {reason.value} for {qname}/{rdtype}" + (f": {detail}" if detail else ""))


def typed_answer(ans: Any, key_name: str, rdtype: str) -> DnsAnswer:
    """The DnsAnswer for a dnspython Answer (raise_on_no_answer=False): FOUND or NODATA."""
    if ans.rrset is None:
        ttl = int(ans.chaining_result.minimum_ttl) if ans.chaining_result else 0
        return DnsAnswer(key_name, rdtype, Status.NODATA, (), ttl)
    values = tuple(_value(rdtype, r) for r in ans.rrset)
    return DnsAnswer(key_name, rdtype, Status.FOUND, values, int(ans.rrset.ttl))


# ---- the client ----------------------------------------------------------------------------


def _value(rdtype: str, rdata: Any) -> Any:
    if rdtype in ("A", "AAAA"):
        return rdata.address
    if rdtype == "MX":
        return (int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True))
    if rdtype in ("PTR", "CNAME", "NS"):
        return rdata.target.to_text(omit_final_dot=True)
    if rdtype in ("TXT", "SPF"):
        return tuple(bytes(s) for s in rdata.strings)
    return rdata.to_text()


def _negative_ttl(responses: dict) -> int:
    """RFC 2308: a negative answer lives min(SOA TTL, SOA MINIMUM); 0 when there is no SOA."""
    best = 0
    for response in responses.values():
        for rrset in getattr(response, "authority", ()):
            if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                best = max(best, min(int(rrset.ttl), int(rrset[0].minimum)))
    return best


def _temp_reason(errors: list) -> TempReason:
    """Classify dnspython's per-server error list (NoNameservers) into one reason."""
    reasons: list[TempReason] = []
    for err in errors:
        exc, response = err[3], err[4]
        if isinstance(exc, dns.exception.Timeout):
            reasons.append(TempReason.TIMEOUT)
        elif response is not None and response.rcode() == dns.rcode.SERVFAIL:
            reasons.append(TempReason.SERVFAIL)
        elif response is not None and response.rcode() == dns.rcode.REFUSED:
            reasons.append(TempReason.REFUSED)
    for reason in (TempReason.SERVFAIL, TempReason.REFUSED, TempReason.TIMEOUT):
        if reason in reasons:
            return reason
    return TempReason.FAILED


def _set_nameservers(resolver: "dns.resolver.Resolver", servers: tuple["Nameserver", ...]) -> None:
    """Point `resolver` at `servers` (address and port each), with any dnspython >= 2.3.

    dnspython 2.4 added per-server objects (`dns.nameserver`); Debian bookworm ships 2.3,
    whose resolver takes address strings plus a port per address (so one address can only
    be used with one port there).
    """
    _nameserver_mod: Any
    try:
        import dns.nameserver as _nameserver_mod
    except ImportError:      # dnspython 2.3 (Debian bookworm) has no per-server objects
        _nameserver_mod = None
    if _nameserver_mod is None:
        resolver.nameservers = [ns.address for ns in servers]
        resolver.nameserver_ports = {ns.address: ns.port for ns in servers}
        return
    resolver.nameservers = [_nameserver_mod.Do53Nameserver(ns.address, ns.port) for ns in servers]


class DnsClient:
    """Thread-safe resolver with a shared TTL cache. Build with `DnsClient.from_settings`."""

    def __init__(self, settings: DnsSettings, resolver: dns.resolver.Resolver,
                 metrics: Callable[[], Any] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.resolver = resolver
        self.cache: TtlCache[DnsAnswer] = TtlCache(settings.cache_size, clock, name="dns", metrics=metrics)
        self._metrics = metrics or (lambda: None)
        self._clock = clock
        # Lookups started before their result is needed (clients/dns_early.py), joined by
        # `query`; None until the session starts one, so a policy without DNS pays nothing.
        self.early: Any = None

    @classmethod
    def from_settings(cls, settings: DnsSettings, metrics: Callable[[], Any] | None = None) -> "DnsClient":
        """Return a client asking `settings.nameservers`, or the /etc/resolv.conf servers if none."""
        if settings.nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            _set_nameservers(resolver, settings.nameservers)
        else:
            try:
                resolver = dns.resolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                # No usable resolv.conf: every query becomes a temporary error (logged by
                # callers), rather than the service refusing to start over a DNS setting.
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = []
        resolver.timeout = settings.timeout
        resolver.lifetime = settings.lifetime
        resolver.cache = None           # our own cache holds typed answers, negative ones too
        resolver.search = []            # names are absolute; never append a local domain
        # 1232 bytes avoids IP fragmentation (DNS flag day 2020); larger answers come truncated
        # and are fetched again over TCP.
        resolver.use_edns(0, 0, 1232)
        return cls(settings, resolver, metrics)

    # -- deadlines -------------------------------------------------------------------------
    def deadline(self) -> float:
        """Return the monotonic time by which one check's DNS work must end (now + budget)."""
        return self._clock() + self.settings.budget

    def _remaining(self, qname: str, rdtype: str, deadline: float | None) -> float:
        left = self.settings.lifetime
        if deadline is not None:
            left = min(left, deadline - self._clock())
        if left <= 0:
            self._count_timeout()
            raise DnsTempError(qname, rdtype, TempReason.BUDGET, "DNS time budget spent")
        return left

    def _count_timeout(self) -> None:
        metrics = self._metrics()
        if metrics is not None:
            metrics.dns_timeout()

    # -- queries ---------------------------------------------------------------------------
    def query(self, name: str, rdtype: str, deadline: float | None = None, literal: bool = False) -> DnsAnswer:
        """Return the typed answer for (name, rdtype); raise DnsTempError when none can be had now.

        A name that is not a valid DNS name gives Status.BADNAME without any query.
        `literal`: see dns_names.to_name (SPF macro output may hold spaces).
        """
        rdtype = rdtype.upper()
        if rdtype not in _CHECKED_TYPES:
            dns.rdatatype.from_text(rdtype)   # a typo in *our* code must fail loudly
            _CHECKED_TYPES.add(rdtype)
        try:
            key_name = cache_key(name, literal)
        except BadName:
            return DnsAnswer(str(name), rdtype, Status.BADNAME)
        key = (key_name, rdtype)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        qname = to_name(name, literal)    # valid: cache_key accepted it
        lifetime = self._remaining(key_name, rdtype, deadline)
        if self.early is not None:
            joined = self.early.join(key, lifetime)
            if joined is not None:
                return joined
        return self.store(key, self._ask(qname, key_name, rdtype, lifetime))

    def _ask(self, qname: dns.name.Name, key_name: str, rdtype: str, lifetime: float) -> DnsAnswer:
        with watched(self._metrics(), "dns", (DnsTempError,)):
            return self._resolve(qname, key_name, rdtype, lifetime)

    def _resolve(self, qname: dns.name.Name, key_name: str, rdtype: str, lifetime: float) -> DnsAnswer:
        try:
            ans = self.resolver.resolve(qname, rdtype, raise_on_no_answer=False, lifetime=lifetime,
                                        search=False)
        except dns.exception.DNSException as exc:
            return self.failed(exc, key_name, rdtype)
        return typed_answer(ans, key_name, rdtype)

    def failed(self, exc: BaseException, key_name: str, rdtype: str) -> DnsAnswer:
        """Turn dnspython's exception into a final negative answer, or raise DnsTempError.

        Shared by the blocking path and the early (asynchronous) lookups, so both classify
        every failure the same way.
        """
        if isinstance(exc, dns.resolver.NXDOMAIN):
            return DnsAnswer(key_name, rdtype, Status.NXDOMAIN, (), _negative_ttl(exc.responses()))
        if isinstance(exc, dns.resolver.YXDOMAIN):
            return DnsAnswer(key_name, rdtype, Status.BADNAME)
        if isinstance(exc, dns.exception.Timeout):
            self._count_timeout()
            raise DnsTempError(key_name, rdtype, TempReason.TIMEOUT, str(exc)) from None
        if isinstance(exc, dns.resolver.NoNameservers):
            reason = _temp_reason(exc.kwargs.get("errors", []))
            if reason is TempReason.TIMEOUT:
                self._count_timeout()
            raise DnsTempError(key_name, rdtype, reason) from None
        raise DnsTempError(key_name, rdtype, TempReason.FAILED, type(exc).__name__) from None

    def store(self, key: tuple[str, str], answer: DnsAnswer) -> DnsAnswer:
        """Cache `answer` for its TTL (capped per settings) and return it."""
        cap = self.settings.max_ttl if answer.status is Status.FOUND else self.settings.max_negative_ttl
        self.cache.put(key, answer, min(answer.ttl, cap))
        return answer

    def lookup(self, name: str, rdtype: str) -> list[str]:
        """Return record texts for (name, rdtype); [] for NXDOMAIN/NODATA/invalid names.

        Raises errors.LookupDefer (DnsTempError) on timeout, SERVFAIL, REFUSED.
        """
        return self.query(name, rdtype).texts()

    def txt(self, name: str, deadline: float | None = None) -> list[bytes]:
        """Return each TXT record of `name` as its joined bytes; [] when there are none."""
        return [b"".join(v) for v in self.query(name, "TXT", deadline).values]

    def dkim_txt(self, name: str, timeout: float = 5) -> bytes | None:
        """dkimpy `dnsfunc` shape: the first TXT record's bytes, or None when there is none.

        Raises DnsTempError (not None) on a temporary failure, so DKIM can report temperror.
        """
        records = self.txt(name, self._clock() + min(float(timeout), self.settings.budget))
        return records[0] if records else None

    def close(self) -> None:
        """Drop cached answers and stop early lookups (services are closed on reload and shutdown)."""
        if self.early is not None:
            self.early.stop()
        self.cache.clear()
