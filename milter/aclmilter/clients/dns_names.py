# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn text from the network (sender domains, HELO names, SPF macro output) into DNS names.

Every name is converted to its A-label (ASCII, `xn--`) form before a query is sent, so a
UTF-8 sender domain (RFC 6531 / RFC 8616) is looked up exactly as its owner published it.
A name that cannot be a DNS name at all yields BadName, which callers treat as "no such
name" -- never as a temporary error, because retrying later cannot make it valid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import functools
import re

from .. import lazy

if TYPE_CHECKING:     # the real module for the type checker; at run time it loads on first use
    import dns.exception
    import dns.name
else:
    dns = lazy.module("dns")      # imported at the first name, not by `aclmilter check`

# one regex search instead of a Python loop over every character (runs for every DNS question)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


@functools.cache
def _codec() -> "dns.name.IDNACodec":
    """IDNA 2008 with UTS #46 mapping needs the `idna` package; without it, IDNA 2003."""
    try:
        import idna as _idna  # noqa: F401  (imported only to learn whether it is available)
    except ImportError:  # pragma: no cover - depends on the installation
        return dns.name.IDNA_2003
    return dns.name.IDNA_2008_Practical


class BadName(ValueError):
    """The text cannot be a DNS name (too long, empty label, not convertible to A-labels)."""


def to_name(text: str, literal: bool = False) -> "dns.name.Name":
    """Return the absolute A-label dns.name.Name for `text`; raise BadName when impossible.

    A trailing dot is optional. Upper/lower case is kept (DNS compares case-insensitively).
    `literal`: ASCII text is split at dots and each label taken octet for octet (spaces,
    `%`, `\\` included: SPF macro output is a name "as is", RFC 7208 §7.3); control
    characters are still refused.
    """
    t = text.strip().rstrip(".") if not literal else text.rstrip(".")
    if not t:
        raise BadName("empty domain name")
    if literal and t.isascii():
        if _CONTROL.search(t):
            raise BadName("control character in domain name")
        try:
            return dns.name.Name([label.encode("ascii") for label in t.split(".")] + [b""])
        except dns.exception.DNSException as exc:
            raise BadName(str(exc) or "invalid domain name") from None
    if _CONTROL_OR_SPACE.search(t):
        # Control characters and spaces never belong in a host name we look up on purpose;
        # refusing them here keeps odd bytes out of our queries and our logs.
        raise BadName("control character or space in domain name")
    try:
        if t.isascii():
            name = dns.name.from_text(t, origin=dns.name.root)
        else:
            name = dns.name.from_unicode(t, origin=dns.name.root, idna_codec=_codec())
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise BadName(str(exc) or "invalid domain name") from None
    if any(len(label) == 0 for label in name.labels[:-1]):
        raise BadName("empty label in domain name")
    return name


def to_alabel(text: str) -> str:
    """Return `text` as lower-case A-label text without the trailing dot; raise BadName."""
    return to_name(text).to_text(omit_final_dot=True).lower()


#: Distinct names remembered by cache_key: a message asks 5-10 names, mostly the same ones
#: as the last message; the bound keeps hostile traffic from growing it.
KEY_MEMO_SIZE = 4096


@functools.lru_cache(maxsize=KEY_MEMO_SIZE)
def cache_key(text: str, literal: bool = False) -> str:
    """The DNS cache's key for `text`: `to_name(text, literal)` as lower-case text without the
    final dot. Remembered per text, so an answer found in the cache costs no dnspython name
    conversion. Raises BadName (never remembered) as to_name does."""
    return to_name(text, literal).to_text(omit_final_dot=True).lower()
