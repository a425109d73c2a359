"""DKIM verification (RFC 6376) of the message as received, one typed result per signature.

`verify_message(message, txt_lookup, ...)` verifies every DKIM-Signature field separately
and returns a frozen `DkimResult`. The body hash is computed by `dkim_bodyhash` from the body
spool in chunks (memory does not grow with the message); dkimpy sees only the header block
and checks the header signature. The `dkim` check rebuilds the header block from the
transaction (headers as the MTA gave them) and routes dkimpy's key lookups through the
shared `dns` service. A DNS failure while fetching a key is TEMPERROR, never
FAIL: dkimpy's convenience `verify()` folds timeouts into False, so the lookup function
raises its own exception, which dkimpy does not catch, and we classify it here.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import base64
import enum
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .. import lazy
from ..errors import LookupDefer
from .dkim_bodyhash import BodyChunks, BodyHashes, body_params, expected_body_hash
from .dkim_fields import field_bytes, header_fields
from .dkim_rsa import verifier_class

# dkimpy loads when the first message is verified, not by `aclmilter check` (lazy.py)
if TYPE_CHECKING:  # pragma: no cover  (at run time the module loads on first use: lazy.py)
    import dkim
    from ..context import EvalContext
else:
    dkim = lazy.module("dkim")

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


_WSP = re.compile(rb"\s+")


def _tags(raw: bytes) -> dict[bytes, bytes]:
    """Lenient tag parse used only to label a signature that dkimpy refused. Tag names are
    case-sensitive and the first of a name counts, as in dkimpy, so a `D=other.example` beside
    `d=` cannot put another domain's name on the signature (RFC 6376 §3.2)."""
    tags: dict[bytes, bytes] = {}
    for m in _TAG.finditer(raw):
        tags.setdefault(m.group(1), _WSP.sub(b"", m.group(2)))
    return tags


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace")


_LABEL_TAGS = (b"d", b"s", b"i", b"a", b"b")


def _labels(tags: dict[bytes, bytes]) -> list[str]:
    """[domain, selector, identity, algorithm, first 8 characters of b=] of a signature's tags
    (whitespace already removed from the values)."""
    domain = _text(tags.get(b"d")).lower()
    return [domain, _text(tags.get(b"s")), _text(tags.get(b"i")) or (f"@{domain}" if domain else ""),
            _text(tags.get(b"a")), _text(tags.get(b"b"))[:8]]


def _verify_one(verifier: Any, idx: int, raw_sig: bytes, txt_lookup: TxtLookup,
                body_hashes: BodyHashes) -> DkimSignature:
    # The labels (d=, s=, i=, a=, b=) come from dkimpy's parse once it accepted the
    # signature, else from our lenient one.
    labels: list[str] = []

    def made(status: DkimStatus, reason: str) -> DkimSignature:
        domain, selector, identity, algorithm, header_b = labels or _labels(_tags(raw_sig))
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
        prep = verifier.verify_headerprep(idx)
        if not prep:
            raise ValueError("signature not found")
        sig, include_headers, sigheaders = prep
        labels = _labels({k: _WSP.sub(b"", sig[k]) for k in _LABEL_TAGS if k in sig})
        params = body_params(sig)
        expected_bh = expected_body_hash(sig)
    except Exception as exc:  # noqa: BLE001 - dkimpy raises several types for malformed input
        # Missing or contradictory tags, expired signature, bad syntax: permanent.
        return made(DkimStatus.PERMERROR, f"signature syntax: {exc}")
    # The body hash is ours (streamed from the spool, shared by signatures with the same
    # c=/a=/l=); dkimpy skips its own body check for a signature without bh=.
    try:
        got_bh = body_hashes(params)
    except KeyError:
        return made(DkimStatus.PERMERROR, f"signature syntax: unsupported algorithm {labels[3]!r}")
    except OSError as exc:   # the spool file could not be read back: not the sender's fault
        return made(DkimStatus.TEMPERROR, f"body not readable: {exc}")
    body_ok = got_bh == expected_bh
    header_sig = {k: v for k, v in sig.items() if k != b"bh"}
    try:
        ok = verifier.verify_sig(header_sig, include_headers, sigheaders[idx], dnsfunc)
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
    mismatch = "" if body_ok else "body hash mismatch (got %s, expected %s)" % (
        base64.b64encode(got_bh).decode(), _text(sig[b"bh"]))
    if ok:
        return made(DkimStatus.FAIL, mismatch) if mismatch else made(DkimStatus.PASS, "")
    if seen and all(v is None for v in seen.values()):
        return made(DkimStatus.PERMERROR, "no key for signature")
    key = next((v for v in seen.values() if v is not None), None)
    if key is not None:
        try:
            dkim.evaluate_pk(b"", key.encode("utf-8", "replace"))
        except (dkim.DKIMException, Exception) as exc:  # noqa: BLE001 - any key defect is permanent
            return made(DkimStatus.PERMERROR, f"key syntax: {exc}")
    return made(DkimStatus.FAIL, mismatch or "signature did not verify")


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """(header block ending in its blank line, body) split as dkimpy splits a message."""
    if message.startswith((b"\r\n", b"\n")):
        return b"\r\n", message[2 if message.startswith(b"\r") else 1:]
    m = re.search(rb"\n\r?\n", message)
    if m is None:
        return message + (b"" if message.endswith(b"\n") else b"\r\n") + b"\r\n", b""
    return message[:m.start() + 1] + b"\r\n", message[m.end():]


def header_block_and_body(message: bytes, body: BodyChunks | None) -> tuple[bytes, BodyChunks]:
    """(header block, body chunks): `message` and `body` as given when there is a `body`,
    else `message` (a whole one) split as dkimpy splits it."""
    if body is not None:
        return message, body
    head, whole_body = split_message(message)
    return head, lambda: (whole_body,)     # one chunk: the caller holds it anyway


def verify_message(message: bytes, txt_lookup: TxtLookup, *, max_signatures: int = DEFAULT_MAX_SIGNATURES,
                   min_key_bits: int = DEFAULT_MIN_KEY_BITS, body: BodyChunks | None = None,
                   fields: list[list[bytes]] | None = None) -> DkimResult:
    """Verify each DKIM-Signature of `message` (CRLF, headers + blank line + body).

    With `body` (a function returning the body's chunks), `message` is the header block
    alone, which is all dkimpy ever parses; the body is read in chunks, once per distinct
    c=/a=/l= of the signatures. With `fields` (dkim_fields.header_fields of the same
    headers), dkimpy takes those instead of parsing `message`, which may then be b"".

    Returns: a DkimResult with one DkimSignature per field, top to bottom, at most
    `max_signatures` of them (the rest counted in `skipped`, never verified: a cap against
    the DNS/crypto amplification of many signatures).
    """
    message, body = header_block_and_body(message, body)
    try:
        # one parse of the header block for every signature (dkimpy's verify(idx) works so)
        verifier = verifier_class()(None if fields is not None else message, minkey=min_key_bits, logger=log)
        if fields is not None:
            verifier.headers = fields
    except Exception as exc:  # noqa: BLE001 - a header block dkimpy cannot split has no usable signature
        log.info("message not parseable for DKIM: %s", type(exc).__name__)
        return DkimResult()
    raw_sigs = [v for n, v in verifier.headers if n.lower() == b"dkim-signature"]
    checked = raw_sigs[:max_signatures]
    sigs: list[DkimSignature] = []
    body_hashes = BodyHashes(body)
    for i, raw in enumerate(checked):
        try:
            sigs.append(_verify_one(verifier, i, raw, txt_lookup, body_hashes))
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
        raw_name, raw_value = field_bytes(name, value, leading_space)
        out += raw_name + b":" + raw_value + b"\r\n"
    out += b"\r\n"
    out += body
    return bytes(out)


def dns_txt_lookup(dns: object) -> TxtLookup:
    """Adapt the shared `dns` service (lookup(name, rdtype)) to a TXT lookup function."""
    def lookup(name: str) -> list[str]:
        return list(dns.lookup(name, "TXT"))  # type: ignore[attr-defined]
    return lookup


def verify_transaction(ctx: "EvalContext") -> DkimResult:
    """Verify every DKIM signature of the current message here (the `dkim` check, registered
    in conditions/dkim.py, decides whether a trusted upstream's results are used instead).

    Returns a DkimResult; DNS trouble is a TEMPERROR signature status, never an exception.
    """
    txn = ctx.txn
    assert txn is not None
    max_sigs = ctx.setting("dkim_max_signatures")
    leading = ctx.setting("dkim_header_leading_space") or "auto"
    fields = header_fields(txn.headers, leading)
    head = build_message(txn.headers, b"", leading) if fields is None else b""
    return verify_message(head, dns_txt_lookup(ctx.services.get("dns")), body=txn.body.chunks, fields=fields,
                          max_signatures=DEFAULT_MAX_SIGNATURES if max_sigs is None else int(max_sigs),
                          min_key_bits=int(ctx.setting("dkim_min_key_bits") or DEFAULT_MIN_KEY_BITS))
