"""A dnspython-Resolver-shaped object that answers from zone data held in memory.

The project's real `clients.dns.DnsClient` is built over it (tests inject that client through
Services), so caching, deadlines, the NXDOMAIN/NODATA distinction and the mapping of
SERVFAIL/timeout to DnsTempError are the production code's, and only the wire is replaced.

Zone data, as scenario files write it::

    example.com:
      TXT: "v=spf1 ip4:192.0.2.0/24 -all"      # one record, or a list of records
      MX: ["10 mx.example.com"]
      A: [192.0.2.1]
    broken.example: servfail                      # every type of this name: SERVFAIL
    slow.example: {TXT: timeout}                  # only TXT times out; other types NODATA

A name that is not listed is NXDOMAIN; a listed name without the asked type is NODATA.
TXT texts longer than 255 bytes are split into character-strings as a zone file would.
"""

from __future__ import annotations

from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

FAILURES = ("servfail", "timeout", "refused")


class ZoneError(ValueError):
    """Zone data that cannot be served (bad type, bad record text)."""


def _txt_rdata(text: str) -> str:
    raw = text.encode()
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + c.decode().replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


class _Answer:
    """What DnsClient reads from a dnspython Answer: rrset (None for NODATA), chaining_result."""

    def __init__(self, rrset: dns.rrset.RRset | None) -> None:
        self.rrset = rrset
        self.chaining_result = None


class ZoneResolver:
    """Serves `zone` (name -> {TYPE: records | failure} | failure); records every question."""

    def __init__(self, zone: dict[str, Any], ttl: int = 300) -> None:
        self.zone: dict[str, Any] = {}
        self.queries: list[tuple[str, str]] = []
        for name, entry in (zone or {}).items():
            key = str(name).lower().rstrip(".")
            if isinstance(entry, str):
                if entry not in FAILURES:
                    raise ZoneError(f"{name}: a failure is one of {FAILURES}, not {entry!r}")
                self.zone[key] = entry
                continue
            if not isinstance(entry, dict):
                raise ZoneError(f"{name}: expected a mapping of record types")
            types: dict[str, Any] = {}
            for rdtype, records in entry.items():
                rdtype = str(rdtype).upper()
                dns.rdatatype.from_text(rdtype)
                if isinstance(records, str) and records in FAILURES:
                    types[rdtype] = records
                    continue
                texts = [records] if isinstance(records, (str, int)) else list(records)
                if rdtype in ("TXT", "SPF"):
                    texts = [_txt_rdata(str(t)) for t in texts]
                try:
                    # names in rdata are absolute (origin: the root), as in a zone file with $ORIGIN .
                    types[rdtype] = dns.rrset.from_text_list(key + ".", ttl, "IN", rdtype, [str(t) for t in texts],
                                                             origin=dns.name.root, relativize=False)
                except dns.exception.DNSException as exc:
                    raise ZoneError(f"{name} {rdtype}: {exc}") from None
            self.zone[key] = types

    def _fail(self, how: str, qname: dns.name.Name, rdtype: str) -> None:
        if how == "timeout":
            raise dns.exception.Timeout(timeout=0.0)
        response = dns.message.make_response(dns.message.make_query(qname, rdtype))
        response.set_rcode(dns.rcode.SERVFAIL if how == "servfail" else dns.rcode.REFUSED)
        request = dns.message.make_query(qname, rdtype)
        raise dns.resolver.NoNameservers(request=request, errors=[("127.0.0.1", False, 53, None, response)])

    def resolve(self, qname: dns.name.Name | str, rdtype: str, *, raise_on_no_answer: bool = True,
                lifetime: float | None = None, search: bool | None = None, **_: Any) -> _Answer:
        """Answer as dnspython's Resolver.resolve does for the cases DnsClient handles."""
        if isinstance(qname, str):
            qname = dns.name.from_text(qname)
        rdtype = str(rdtype).upper()
        key = qname.to_text(omit_final_dot=True).lower()
        self.queries.append((key, rdtype))
        entry = self.zone.get(key)
        if entry is None:
            raise dns.resolver.NXDOMAIN(qnames=[qname], responses={})
        if isinstance(entry, str):
            self._fail(entry, qname, rdtype)
        found = entry.get(rdtype)
        if isinstance(found, str):
            self._fail(found, qname, rdtype)
        if found is None and not raise_on_no_answer:
            return _Answer(None)
        if found is None:
            raise dns.resolver.NoAnswer()
        return _Answer(found)

    @property
    def failures(self) -> bool:
        """True when the zone plays a broken DNS somewhere (a real server cannot serve that)."""
        return any(isinstance(e, str) or any(isinstance(v, str) for v in e.values()) for e in self.zone.values())

    def records(self) -> list[tuple[str, str, str]]:
        """Every record as (name, type, rdata text), for a real server's zone file."""
        return [(name, rdtype, rd.to_text()) for name, entry in self.zone.items() if isinstance(entry, dict)
                for rdtype, rrset in entry.items() if not isinstance(rrset, str) for rd in rrset]
