"""DMARC policy discovery: RFC 7489 §6.6.3 (PSL) or RFC 9989 §4.10 (DNS tree walk).

`discover(author, mode, txt, psl)` returns a frozen `Discovery`; `OrgDomains` answers
"what is the Organizational Domain of X" for alignment in the same mode. DNS trouble is a
TEMPERROR outcome, never "no record": mail must not be judged on a lookup that failed.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import LookupDefer
from .dmarc_psl import PslCache
from .dmarc_record import DmarcRecord, RecordError, is_dmarc, parse_record

TxtLookup = Callable[[str], list[str]]
MAX_WALK_QUERIES = 8   # RFC 9989 §4.10


class Found(enum.Enum):
    RECORD = "record"          # a usable record
    NONE = "none"              # no (single) DMARC record: DMARC does not apply
    INVALID = "invalid"        # a record that cannot be used (permerror)
    TEMPERROR = "temperror"    # DNS could not answer


@dataclass(frozen=True)
class Discovery:
    outcome: Found
    record: DmarcRecord | None = None
    policy_domain: str = ""     # where the applied record was found
    org_domain: str = ""        # Organizational Domain of the author domain
    queries: tuple[str, ...] = ()
    error: str = ""


class _Answers:
    """Per-message memo of `_dmarc.<name>` answers so walks for several identifiers share queries."""

    def __init__(self, txt: TxtLookup) -> None:
        self.txt = txt
        self.memo: dict[str, list[str]] = {}
        self.asked: list[str] = []

    def dmarc(self, name: str) -> list[str]:
        """Return the v=DMARC1 strings at _dmarc.<name>; raises LookupDefer."""
        if name not in self.memo:
            qname = f"_dmarc.{name}"
            self.asked.append(qname)
            self.memo[name] = [t for t in self.txt(qname) if is_dmarc(t)]
        return self.memo[name]


def walk_names(domain: str) -> list[str]:
    """Names a tree walk queries, longest first, at most 8 (RFC 9989 §4.10 shortening)."""
    labels = domain.split(".")
    names = [domain]
    rest = labels[1:] if len(labels) <= MAX_WALK_QUERIES else labels[-(MAX_WALK_QUERIES - 1):]
    while rest:
        names.append(".".join(rest))
        rest = rest[1:]
    return names[:MAX_WALK_QUERIES]


@dataclass
class _Walk:
    found: list[tuple[str, DmarcRecord]] = field(default_factory=list)      # valid records only
    invalid: list[tuple[str, RecordError]] = field(default_factory=list)


def _walk(start: str, answers: _Answers) -> _Walk:
    """Collect single DMARC records from `start` upwards, stopping at psd=y|n.

    Only valid records take part in the selection (RFC 9989 §4.10.2): an invalid record at
    `_dmarc.com` must not hide example.com's own record; invalid ones are kept apart.
    """
    walk = _Walk()
    for name in walk_names(start):
        records = answers.dmarc(name)
        if len(records) != 1:
            continue     # none, or several: several are discarded as if absent
        try:
            rec = parse_record(records[0])
        except RecordError as exc:
            walk.invalid.append((name, exc))
            continue
        walk.found.append((name, rec))
        if rec.psd in ("y", "n") and not (rec.psd == "y" and name == start):
            break
    return walk


def _org_from_walk(start: str, walk: _Walk) -> str:
    """RFC 9989 §4.10.2: psd=n -> that name; psd=y -> one label below it; else fewest labels."""
    for name, rec in walk.found:
        if rec.psd == "n":
            return name
        if rec.psd == "y" and name != start:
            below = start[: -len(name) - 1].rpartition(".")[2]
            return f"{below}.{name}"
    if walk.found:
        return min((name for name, _ in walk.found), key=lambda n: n.count("."))
    return start


class OrgDomains:
    """Organizational Domain of any name, by PSL (rfc7489) or tree walk (dmarcbis)."""

    def __init__(self, mode: str, txt: TxtLookup, psl: PslCache) -> None:
        self.mode = mode
        self.answers = _Answers(txt)
        self.psl = psl

    def org(self, domain: str) -> str:
        """Return the Organizational Domain; raises LookupDefer in dmarcbis mode on DNS trouble."""
        domain = domain.lower().rstrip(".")
        if self.mode == "dmarcbis":
            return _org_from_walk(domain, _walk(domain, self.answers))
        return self.psl.org_domain(domain)

    def aligned(self, a: str, b: str, strict: bool) -> bool:
        """True if two domains align: equal (strict) or same Organizational Domain (relaxed)."""
        a, b = a.lower().rstrip("."), b.lower().rstrip(".")
        if a == b:
            return True
        return not strict and bool(a) and bool(b) and self.org(a) == self.org(b)


def _use(name: str, text_or_error: DmarcRecord | RecordError, org: str, asked: list[str]) -> Discovery:
    if isinstance(text_or_error, RecordError):
        return Discovery(Found.INVALID, None, name, org, tuple(asked), str(text_or_error))
    return Discovery(Found.RECORD, text_or_error, name, org, tuple(asked))


def discover(author: str, orgs: OrgDomains) -> Discovery:
    """Find the DMARC record that applies to mail from `author` (an A-label domain).

    Returns Discovery with outcome RECORD (record + where), NONE (no record, or several at
    the deciding name), INVALID (unusable record; permerror), or TEMPERROR.
    """
    answers = orgs.answers
    try:
        at_author = answers.dmarc(author)
        if orgs.mode == "dmarcbis":
            walk = _walk(author, answers)
            org = _org_from_walk(author, walk)
            if walk.found and walk.found[0][0] == author:
                return _use(author, walk.found[0][1], org, answers.asked)
            if not walk.found:
                if walk.invalid:     # nothing valid anywhere: the nearest invalid record is the error
                    return _use(walk.invalid[0][0], walk.invalid[0][1], org, answers.asked)
                return Discovery(Found.NONE, None, author, org, tuple(answers.asked), "no DMARC record")
            chosen = next((f for f in walk.found if f[0] == org), None)
            if chosen is None:
                chosen = min(walk.found, key=lambda f: f[0].count("."))
            return _use(chosen[0], chosen[1], org, answers.asked)
        org = orgs.psl.org_domain(author)
        records, where = at_author, author
        if not records and org != author:
            records, where = answers.dmarc(org), org
    except LookupDefer as exc:
        return Discovery(Found.TEMPERROR, None, author, "", tuple(answers.asked), f"DNS: {exc}")
    if len(records) != 1:
        why = "no DMARC record" if not records else f"{len(records)} DMARC records at {where}"
        return Discovery(Found.NONE, None, author, org, tuple(answers.asked), why)
    try:
        return _use(where, parse_record(records[0]), org, answers.asked)
    except RecordError as exc:
        return _use(where, exc, org, answers.asked)


def author_exists(dns: Any, domain: str, mode: str = "rfc7489") -> bool:
    """Does the author domain exist, for choosing `np` over `sp`?

    rfc7489 (RFC 9091 §2.7): it does not exist when it is NXDOMAIN, or has no A, AAAA and
    MX records. dmarcbis (RFC 9989 §3.2.13): NXDOMAIN only. A DNS failure counts as
    "exists", so `np` (usually the harsher policy) is never applied on a guess.
    """
    query = getattr(dns, "query", None)
    try:
        if query is not None:
            first = query(domain, "A")
            if getattr(first.status, "value", "") == "nxdomain":
                return False
            if mode == "dmarcbis" or first.values:
                return True
            return any(query(domain, rdtype).values for rdtype in ("AAAA", "MX"))
        return any(dns.lookup(domain, rdtype) for rdtype in ("A", "AAAA", "MX"))
    except LookupDefer:
        return True
