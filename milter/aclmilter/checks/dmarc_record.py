"""Parse one DMARC policy record (RFC 7489 §6.3, RFC 9091 `np`, RFC 9989 `psd`/`t`).

`parse_record(text)` returns a frozen `DmarcRecord` or raises `RecordError` (the text is a
DMARC record but unusable); `is_dmarc(text)` tells whether a TXT string is a DMARC record
at all (others at the same name are ignored, RFC 7489 §6.6.3 step 2).
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass


class Policy(enum.Enum):
    """A requested handling policy (`p`, `sp`, `np`)."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"

    @property
    def history_code(self) -> int:
        """OpenDMARC's ASCII code for the history file (110/113/114)."""
        return ord(self.value[0])

    def one_lower(self) -> "Policy":
        """The policy applied when a message is not sampled (pct) or under t=y."""
        return {Policy.REJECT: Policy.QUARANTINE, Policy.QUARANTINE: Policy.NONE}.get(self, Policy.NONE)


class AlignMode(enum.Enum):
    RELAXED = "r"
    STRICT = "s"


class RecordError(ValueError):
    """A DMARC record that cannot be used; `rua_valid` says if it had a usable `rua`."""

    def __init__(self, message: str, rua_valid: bool = False) -> None:
        super().__init__(message)
        self.rua_valid = rua_valid


@dataclass(frozen=True)
class DmarcRecord:
    """The tags of one record. `p` is None only when the record was accepted as `p=none`
    because it had no valid `p` but a valid `rua` (then `implicit_none` is set)."""

    p: Policy
    sp: Policy | None = None
    np: Policy | None = None
    adkim: AlignMode = AlignMode.RELAXED
    aspf: AlignMode = AlignMode.RELAXED
    pct: int = 100
    pct_given: bool = False
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: tuple[str, ...] = ("0",)
    psd: str = "u"          # y | n | u (RFC 9989)
    testing: bool = False   # t=y (RFC 9989)
    implicit_none: bool = False
    text: str = ""


_VERSION = re.compile(r"^\s*v\s*=\s*DMARC1\s*(;|$)")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s,;]+\Z")


def is_dmarc(text: str) -> bool:
    """True if the TXT string starts with the `v=DMARC1` tag (only such strings count)."""
    return bool(_VERSION.match(text))


def _policy(value: str) -> Policy | None:
    try:
        return Policy(value.strip().lower())
    except ValueError:
        return None


def _uris(value: str) -> tuple[str, ...]:
    uris = tuple(u.strip() for u in value.split(",") if u.strip())
    return tuple(u for u in uris if _URI.match(u))


@functools.lru_cache(maxsize=1024)
def parse_record(text: str) -> DmarcRecord:
    """Return the record's tags; unknown tags are ignored (RFC 7489 §6.3).

    Raises RecordError when `p` is missing or invalid (and there is no usable `rua` to
    fall back to `p=none` with), or `sp`/`np` are invalid.

    Remembered per record text (the DNS cache hands the same text to every message of a
    domain, and the result is frozen); a refused text is not remembered and raises again.
    """
    if not is_dmarc(text):
        raise RecordError("not a DMARC1 record")
    tags: dict[str, str] = {}
    for part in text.split(";")[1:]:
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq:
            continue   # a malformed fragment is ignored like an unknown tag
        key = key.strip().lower()
        tags.setdefault(key, value.strip())
    rua = _uris(tags.get("rua", ""))
    p = _policy(tags["p"]) if "p" in tags else None
    sp = _policy(tags["sp"]) if "sp" in tags else None
    np_ = _policy(tags["np"]) if "np" in tags else None
    bad_sub = ("sp" in tags and sp is None) or ("np" in tags and np_ is None)
    implicit = False
    if p is None or bad_sub:
        if not rua:
            raise RecordError("DMARC record without a valid p tag" if p is None else
                              "DMARC record with an invalid sp/np tag")
        p, sp, np_, implicit = Policy.NONE, None, None, True
    pct, pct_given = 100, "pct" in tags
    if pct_given:
        try:
            pct = max(0, min(100, int(tags["pct"])))
        except ValueError:
            pct, pct_given = 100, False
    fo = tuple(x.strip() for x in tags.get("fo", "0").split(":") if x.strip() in ("0", "1", "d", "s")) or ("0",)
    return DmarcRecord(
        p=p, sp=sp, np=np_,
        adkim=AlignMode.STRICT if tags.get("adkim", "r").lower() == "s" else AlignMode.RELAXED,
        aspf=AlignMode.STRICT if tags.get("aspf", "r").lower() == "s" else AlignMode.RELAXED,
        pct=pct, pct_given=pct_given, rua=rua, ruf=_uris(tags.get("ruf", "")), fo=fo,
        psd=tags.get("psd", "u").lower() if tags.get("psd", "u").lower() in ("y", "n", "u") else "u",
        testing=tags.get("t", "n").lower() == "y",
        implicit_none=implicit, text=text,
    )
