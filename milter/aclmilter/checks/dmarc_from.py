"""Find the one RFC5322.From domain DMARC evaluates (RFC 7489 §6.6.1, RFC 9989 §5.3.1).

Returns a `FromDomain`: exactly one lower-case A-label domain; or, for a valid field with
mailboxes in several domains, all of them (`domains`: RFC 7489 §6.6.1 evaluates each); or
the reason why there is none (no From field, several From fields, group syntax, an address
that does not parse, a domain that is not a host name).

A parse defect alone does not remove the author domain (RFC 6532 local parts are reported
as a defect by Python's parser: treating that as "no From" let anyone pass a p=reject
domain). A defective field is evaluated when every reading gives the same single domain:
the parser found one, and no other `@domain` appears anywhere in the raw field. Anything
ambiguous is "no domain" rather than a guess: the CVEs around From parsing (CVE-2019-16378,
the `"x <a@junk>"@real` confusion, CVE-2020-12272 injected characters) came from guessing.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import re
from dataclasses import dataclass
from .. import lazy
from ..clients.dns_names import BadName, to_alabel as dns_alabel

# The stdlib header parser (~10 ms to import with email.policy) reads only fields the two
# everyday patterns below do not: imported by the first such field, never by `aclmilter check`.
_email_errors = lazy.module("email.errors")
_email_policy = lazy.module("email.policy")

#: A host name after IDNA conversion: LDH labels, 1..63 octets, at least two labels.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
#: Whatever follows an `@` up to a delimiter: a second, parser-independent reading of a
#: defective field (quotes, comments and display names are deliberately not honoured).
_AT_DOMAIN = re.compile(r"@\s*([^\s<>()\[\]\",;:@\\]*)")
#: The everyday shapes of a From field, `local@host.example` and `Name <local@host.example>`
#: (an atom phrase or a plain quoted string, ASCII, no comments, no second `@`): read without
#: the stdlib parser, which costs ~300 Python calls a message. On these shapes both readings
#: give the same address (tests/unit/test_dmarc_from_fast.py compares them); anything else
#: goes to the parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDRESS = rf"({_ATOM}(?:\.{_ATOM})*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
_BARE_ADDRESS = re.compile(rf"{_SIMPLE_ADDRESS}\Z")
_NAME_ADDRESS = re.compile(rf'(?:{_ATOM}(?: +{_ATOM})*|"[ !#-?A-\[\]-~]+")? *<{_SIMPLE_ADDRESS}>\Z')


@dataclass(frozen=True)
class FromDomain:
    """The author domain, or `domain is None` with a human-readable `problem`."""

    domain: str | None
    problem: str = ""
    address: str = ""     # the single author address (for failure reports)
    domains: tuple[str, ...] = ()   # a valid multi-domain From: every domain (domain is None)


def to_alabel(domain: str) -> str | None:
    """Return the lower-case A-label form of a host name, or None if it is not one."""
    domain = domain.strip().rstrip(".")
    if not domain or len(domain) > 253:
        return None
    try:
        # IDNA 2008 (RFC 8616 §6 via RFC 5891), the same conversion SPF and the DNS client
        # use: Python's "idna" codec is IDNA 2003 and turns straße.example into strasse.example
        ascii_name = dns_alabel(domain) if not domain.isascii() else domain.lower()
    except BadName:
        return None
    labels = ascii_name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return None
    return ascii_name


def author_domain(headers: list[tuple[str, str]]) -> FromDomain:
    """Return the From domain of a message given its (name, value) header list.

    Exactly one From field is accepted, holding one or more mailboxes that all share one
    domain; group syntax, zero or several domains, and unparseable fields give no domain.
    """
    values = [v for n, v in headers if n.strip().lower() == "from"]
    if not values:
        return FromDomain(None, "no From header field")
    if len(values) > 1:
        return FromDomain(None, f"{len(values)} From header fields")
    raw = _FOLD.sub("", values[0]).strip()
    if not raw:
        return FromDomain(None, "empty From header field")
    return simple_reading(raw) or parsed_reading(raw)


def simple_reading(raw: str) -> FromDomain | None:
    """The author domain of an everyday-shaped field (see _NAME_ADDRESS); None for any other."""
    simple = _BARE_ADDRESS.match(raw) or _NAME_ADDRESS.match(raw)
    if simple is None:
        return None
    local, domain = simple.groups()
    alabel = to_alabel(domain)
    if alabel is None:
        return FromDomain(None, "From domain is not a valid host name")
    return FromDomain(alabel, "", f"{local}@{alabel}")


def parsed_reading(raw: str) -> FromDomain:
    """The author domain of an unfolded, stripped, non-empty field, by the stdlib parser."""
    try:
        parsed = _email_policy.default.header_factory("From", raw)
    except Exception:  # noqa: BLE001 - HeaderParseError included
        # The stdlib parser is not total: it raised AttributeError on `:;"` (found by fuzzing).
        return FromDomain(None, "From header field does not parse")
    # Obsolete-but-valid syntax and RFC 6532 UTF-8 local parts are no defects to us.
    not_defects = (_email_errors.ObsoleteHeaderDefect, _email_errors.NonASCIILocalPartDefect)
    defective = any(not isinstance(d, not_defects) for d in getattr(parsed, "defects", ()))
    groups = getattr(parsed, "groups", ())
    if any(g.display_name is not None for g in groups):
        return FromDomain(None, "From uses group syntax")
    addresses = [a for g in groups for a in g.addresses]
    if not addresses:
        return FromDomain(None, "no address in From")
    domains = set()
    for addr in addresses:
        if not addr.username or not addr.domain:
            return FromDomain(None, "From address without a domain")
        alabel = to_alabel(addr.domain)
        if alabel is None:
            return FromDomain(None, "From domain is not a valid host name")
        domains.add(alabel)
    if defective and not _one_reading(raw, domains):
        # Python and a mail client may read `a@b.example <c@d.example>` differently.
        return FromDomain(None, "From header field does not parse")
    if len(domains) > 1:
        return FromDomain(None, f"From holds {len(domains)} domains", domains=tuple(sorted(domains)))
    domain = domains.pop()
    return FromDomain(domain, "", f"{addresses[0].username}@{domain}" if len(addresses) == 1 else "")


def _one_reading(raw: str, domains: set[str]) -> bool:
    """True if a defective field still names one domain only: the parser found exactly one
    and every `@...` in the raw text is that domain."""
    if len(domains) != 1:
        return False
    seen = {to_alabel(m) for m in _AT_DOMAIN.findall(raw)}
    return seen == domains
