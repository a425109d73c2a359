# SPDX-License-Identifier: GPL-3.0-or-later
"""SRS addresses in Exim's native format (Exim >= 4.95 `${srs_encode}` / `inbound_srs`), sans I/O.

Format: `SRS0=HHHH=TT=<original domain>=<original local part>@<forwarding domain>` where
HHHH is the first four hex digits of HMAC-MD5(secret, lower-cased original return path) and
TT the day number (days since the epoch, low 10 bits) in two base32 digits (a-z, 2-7).

postsrsd (and libsrs2, Mail::SRS, pysrs) use the same five fields but a different MAC
(HMAC-SHA1 over timestamp, domain and local part, base64, case-sensitive) and upper-case
base32 digits: an address made by one cannot be verified by the other. pysrs is therefore
not used here (and PyPI's pysrs 1.0.3 also fails on Python >= 3.9: base64.encodestring).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .. import lazy

# imported by the first SRS address made or checked, never by `aclmilter check` (lazy.py)
hashlib = lazy.module("hashlib")
hmac = lazy.module("hmac")

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
#: SRS0 (any case), then hash, day stamp, domain and local part (which may contain `=`).
#: Like Exim 4.96's inbound_srs the hash and the stamp are compared case-sensitively.
_SRS0 = re.compile(r"^[Ss][Rr][Ss]0=([^=]{4})=([^=]{2})=([^=@]+)=([^@]+)\Z")
#: Exim's default: an SRS0 address is good for 10 days and never dated in the future.
MAX_AGE_DAYS = 10
DAY = 86400
PERIOD = 1024           # the timestamp wraps after 1024 days


def timestamp(now: float) -> str:
    """The two-character day stamp for the time `now` (seconds since the epoch)."""
    day = int(now // DAY) % PERIOD
    return _B32[day >> 5] + _B32[day & 31]


def mac(secret: str, return_path: str) -> str:
    """HHHH: the first four hex digits of HMAC-MD5(secret, lower-cased return path)."""
    return hmac.new(secret.encode("utf-8"), return_path.lower().encode("utf-8"), hashlib.md5).hexdigest()[:4]


def encode(secret: str, return_path: str, forward_domain: str, now: float) -> str:
    """`${srs_encode{secret}{return path}{domain}}`: the SRS0 address, "" for an empty return path.

    Byte-compatible with Exim 4.96 (compared with `exim -be` in the tests): the hash is taken
    over the return path as given, the fields from it without angle brackets; a return path
    without `@` gives an empty domain field.
    """
    if not return_path:
        return ""
    rp = return_path[1:-1] if return_path.startswith("<") and return_path.endswith(">") else return_path
    local, _, domain = rp.rpartition("@") if "@" in rp else (rp, "", "")
    return f"SRS0={mac(secret, return_path)}={timestamp(now)}={domain}={local}@{forward_domain}"


def is_srs(local_part: str) -> bool:
    """True when the local part has the SRS0 shape (whatever its hash)."""
    return bool(_SRS0.match(local_part))


def original(local_part: str) -> str | None:
    """The original address an SRS0 local part names, unverified (None if not SRS0)."""
    m = _SRS0.match(local_part)
    return f"{m.group(4)}@{m.group(3)}" if m else None


class Status(enum.Enum):
    """What `decode` found."""

    OK = "ok"                  # a valid SRS0 address with a good hash and a fresh timestamp
    NOT_SRS = "not_srs"        # not an SRS0 local part at all
    BAD_HASH = "bad_hash"      # SRS0 syntax, but no secret gives its hash (forged or old secret)
    EXPIRED = "expired"        # hash good, timestamp older than the allowed age


@dataclass(frozen=True)
class Decoded:
    status: Status
    recipient: str = ""        # the original return path (local@domain) when status is OK
    secret_index: int = -1     # which secret verified it (0 = the current one)


def decode(local_part: str, secrets: tuple[str, ...], now: float, max_age_days: int = MAX_AGE_DAYS) -> Decoded:
    """Check an SRS0 local part against every secret (rotation: the first one encodes).

    Returns Decoded(OK, original address) when one secret reproduces the hash and the day
    stamp is at most `max_age_days` old (modulo the 1024-day period); otherwise the reason.
    """
    m = _SRS0.match(local_part)
    if not m:
        return Decoded(Status.NOT_SRS)
    hash_, stamp, domain, local = m.groups()
    original = f"{local}@{domain}"
    for i, secret in enumerate(secrets):
        if hmac.compare_digest(mac(secret, original), hash_):
            if stamp[0] not in _B32 or stamp[1] not in _B32:
                return Decoded(Status.EXPIRED, original, i)
            then = _B32.index(stamp[0]) << 5 | _B32.index(stamp[1])
            age = (int(now // DAY) - then) % PERIOD
            if age > max_age_days:
                return Decoded(Status.EXPIRED, original, i)
            return Decoded(Status.OK, original, i)
    return Decoded(Status.BAD_HASH)
