"""DKIM verification (RFC 6376) of the message as received, one typed result per signature.

`verify_message(message, txt_lookup, ...)` verifies every DKIM-Signature field separately
with dkimpy and returns a frozen `DkimResult`. The `dkim` check builds the message from the
transaction (headers as the MTA gave them, body spool) and routes dkimpy's key lookups
through the shared `dns` service. A DNS failure while fetching a key is TEMPERROR, never
FAIL: dkimpy's convenience `verify()` folds timeouts into False, so the lookup function
raises its own exception, which dkimpy does not catch, and we classify it here.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import dkim

from .. import registry
from ..errors import LookupDefer

if TYPE_CHECKING:  # pragma: no cover
    from ..context import EvalContext

log = logging.getLogger("aclmilter.dkim")

DEFAULT_MAX_SIGNATURES = 10
DEFAULT_MIN_KEY_BITS = 1024


class DkimStatus(enum.Enum):
    """Per-signature outcome, with RFC 8601 result words."""

    PASS = "pass"
    FAIL = "fail"
    NEUTRAL = "neutral"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"
    NONE = "none"          # only as the summary of an unsigned message


@dataclass(frozen=True)
class DkimSignature:
    """One DKIM-Signature field and what verifying it gave."""

    domain: str            # d= (lower case), "" if the field did not parse
    selector: str          # s=
    identity: str          # i= (default "@" + d)
    algorithm: str         # a=
    status: DkimStatus
    reason: str = ""
    header_b: str = ""     # first 8 characters of b=, for A-R `header.b`


@dataclass(frozen=True)
class DkimResult:
    """All signatures of a message, in header order, plus how many were left unverified."""

    signatures: tuple[DkimSignature, ...] = ()
    skipped: int = 0                      # signatures beyond settings.dkim_max_signatures
    source: str = "local"                 # "local" or "upstream:<authserv-id>"

    @property
    def status(self) -> DkimStatus:
        """Summary: pass if any signature passed, else the most telling failure, none if unsigned."""
        found = {s.status for s in self.signatures}
        for st in (DkimStatus.PASS, DkimStatus.TEMPERROR, DkimStatus.FAIL, DkimStatus.PERMERROR,
                   DkimStatus.NEUTRAL):
            if st in found:
                return st
        return DkimStatus.NONE

    @property
    def passing_domains(self) -> tuple[str, ...]:
        """d= domains of passing signatures, in order, without repeats."""
        out: list[str] = []
        for s in self.signatures:
            if s.status is DkimStatus.PASS and s.domain not in out:
                out.append(s.domain)
        return tuple(out)


class _KeyTempError(Exception):
    """Raised from the key lookup on a DNS timeout/SERVFAIL. Deliberately not a DKIMException,
    so dkimpy lets it through instead of turning it into a failed signature."""


TxtLookup = Callable[[str], list[str]]   # name -> TXT strings; raises LookupDefer


_TAG = re.compile(rb"(?:^|;)\s*([a-zA-Z][a-zA-Z0-9_]*)\s*=\s*([^;]*)")


def _tags(raw: bytes) -> dict[bytes, bytes]:
    """Lenient tag parse used only to label a signature that dkimpy refused."""
    return {m.group(1).lower(): re.sub(rb"\s+", b"", m.group(2)) for m in _TAG.finditer(raw)}


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace")


def _verify_one(message: bytes, idx: int, raw_sig: bytes, txt_lookup: TxtLookup, min_key_bits: int
                ) -> DkimSignature:
    tags = _tags(raw_sig)
    domain = _text(tags.get(b"d")).lower()
    selector = _text(tags.get(b"s"))
    identity = _text(tags.get(b"i")) or (f"@{domain}" if domain else "")
    algorithm = _text(tags.get(b"a"))
    header_b = _text(tags.get(b"b"))[:8]

    def made(status: DkimStatus, reason: str) -> DkimSignature:
        return DkimSignature(domain, selector, identity, algorithm, status, reason, header_b)

    seen: dict[str, str | None] = {}

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        qname = name.decode("ascii", "replace").rstrip(".")
        try:
            records = txt_lookup(qname)
        except LookupDefer as exc:
            raise _KeyTempError(str(exc) or "DNS lookup failed") from None
        seen[qname] = records[0] if records else None
        return records[0].encode("utf-8", "replace") if records else None

    try:
        verifier = dkim.DKIM(message, minkey=min_key_bits, logger=log)
        verifier.verify_headerprep(idx)
    except Exception as exc:  # noqa: BLE001 - dkimpy raises several types for malformed input
        # Missing or contradictory tags, expired signature, bad syntax: permanent.
        return made(DkimStatus.PERMERROR, f"signature syntax: {exc}")
    try:
        ok = verifier.verify(idx, dnsfunc=dnsfunc)
    except _KeyTempError as exc:
        return made(DkimStatus.TEMPERROR, f"key lookup failed: {exc}")
    except dkim.ValidationError as exc:
        return made(DkimStatus.FAIL, str(exc))
    except (dkim.KeyFormatError, dkim.UnknownKeyTypeError, dkim.NaClNotFoundError) as exc:
        return made(DkimStatus.PERMERROR, f"key: {exc}")
    except dkim.DKIMException as exc:
        return made(DkimStatus.PERMERROR, str(exc))
    except Exception as exc:  # noqa: BLE001 - hostile input must not crash the message
        log.warning("dkimpy raised %s verifying signature %d", type(exc).__name__, idx)
        return made(DkimStatus.PERMERROR, f"unverifiable signature ({type(exc).__name__})")
    if ok:
        return made(DkimStatus.PASS, "")
    if seen and all(v is None for v in seen.values()):
        return made(DkimStatus.PERMERROR, "no key for signature")
    key = next((v for v in seen.values() if v is not None), None)
    if key is not None:
        try:
            dkim.evaluate_pk(b"", key.encode("utf-8", "replace"))
        except (dkim.DKIMException, Exception) as exc:  # noqa: BLE001 - any key defect is permanent
            return made(DkimStatus.PERMERROR, f"key syntax: {exc}")
    return made(DkimStatus.FAIL, "signature did not verify")


def verify_message(message: bytes, txt_lookup: TxtLookup, *, max_signatures: int = DEFAULT_MAX_SIGNATURES,
                   min_key_bits: int = DEFAULT_MIN_KEY_BITS) -> DkimResult:
    """Verify each DKIM-Signature of `message` (CRLF, headers + blank line + body).

    Returns: a DkimResult with one DkimSignature per field, top to bottom, at most
    `max_signatures` of them (the rest counted in `skipped`, never verified: a cap against
    the DNS/crypto amplification of many signatures).
    """
    try:
        probe = dkim.DKIM(message)
    except Exception as exc:  # noqa: BLE001 - a header block dkimpy cannot split has no usable signature
        log.info("message not parseable for DKIM: %s", type(exc).__name__)
        return DkimResult()
    raw_sigs = [v for n, v in probe.headers if n.lower() == b"dkim-signature"]
    checked = raw_sigs[:max_signatures]
    sigs: list[DkimSignature] = []
    for i, raw in enumerate(checked):
        try:
            sigs.append(_verify_one(message, i, raw, txt_lookup, min_key_bits))
        except Exception as exc:  # noqa: BLE001 - hostile input: an unverifiable signature, never a crash
            log.warning("DKIM signature %d unverifiable: %s", i, type(exc).__name__)
            sigs.append(DkimSignature("", "", "", "", DkimStatus.PERMERROR,
                                      f"unverifiable signature ({type(exc).__name__})"))
    return DkimResult(tuple(sigs), len(raw_sigs) - len(checked))


def build_message(headers: list[tuple[str, str]], body: bytes, leading_space: str = "auto") -> bytes:
    """Rebuild the message bytes dkimpy needs from the milter's header list and body.

    Postfix strips the one space after the colon unless the milter negotiated
    SMFIP_HDR_LEADSPC; `simple` header canonicalisation needs it back. leading_space:
    "auto" adds a space unless the value already starts with whitespace (correct for both
    negotiations except for a header written without a space, which is rare), "add" always
    adds one, "keep" never does. Folding is normalised to CRLF.
    """
    out = bytearray()
    for name, value in headers:
        if leading_space == "add" or (leading_space == "auto" and not value[:1] in (" ", "\t")):
            value = " " + value
        value = value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
        out += name.encode("utf-8", "surrogateescape") + b":" + value.encode("utf-8", "surrogateescape") + b"\r\n"
    out += b"\r\n"
    out += body
    return bytes(out)


def dns_txt_lookup(dns: object) -> TxtLookup:
    """Adapt the shared `dns` service (lookup(name, rdtype)) to a TXT lookup function."""
    def lookup(name: str) -> list[str]:
        return list(dns.lookup(name, "TXT"))  # type: ignore[attr-defined]
    return lookup


@registry.check("dkim")
def dkim_check(ctx: "EvalContext") -> DkimResult:
    """Verify every DKIM signature of the current message (once per transaction).

    Returns a DkimResult; DNS trouble is a TEMPERROR signature status, never an exception.
    """
    txn = ctx.txn
    assert txn is not None
    from .dmarc_upstream import trusted_upstream_dkim  # late import: avoids a cycle
    upstream = trusted_upstream_dkim(ctx)
    if upstream is not None:
        return upstream
    max_sigs = ctx.setting("dkim_max_signatures")
    leading = ctx.setting("dkim_header_leading_space") or "auto"
    message = build_message(txn.headers, txn.body.read(), leading)
    return verify_message(message, dns_txt_lookup(ctx.services.get("dns")),
                          max_signatures=DEFAULT_MAX_SIGNATURES if max_sigs is None else int(max_sigs),
                          min_key_bits=int(ctx.setting("dkim_min_key_bits") or DEFAULT_MIN_KEY_BITS))
