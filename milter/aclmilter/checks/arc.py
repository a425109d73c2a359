# SPDX-License-Identifier: GPL-3.0-or-later
"""ARC chain verification (RFC 8617) with dkimpy's ARC support.

`verify_chain(message, txt_lookup)` returns a frozen `ArcResult`: the chain status (the
`cv` a sealer would write next: pass, fail or none; temperror when a key lookup failed, never
fail), the sealing domains and selectors by instance, the oldest instance whose
ARC-Message-Signature still verifies (`$arc_oldest_pass`), and each instance's
ARC-Authentication-Results, which DMARC reads when a trusted sealer vouches for a message
that a mailing list changed (checks/dmarc_arc.py).

The ARC-Message-Signature body hashes are ours, as DKIM's are (checks/dkim_bodyhash.py):
streamed from the body spool, once per distinct c=/a=/l=; dkimpy sees the header block only.

dkimpy quirks handled here: a chain whose newest seal says `cv=fail` comes back as `None`
("terminated") and is a fail; a lookup function that raises something other than a
DKIMException escapes `arc_verify`, which is how a DNS timeout is told apart from a bad key.
"""

from __future__ import annotations

import base64
import enum
import functools
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any


from .. import lazy, registry
from ..errors import LookupDefer
from .dkim import (DEFAULT_MIN_KEY_BITS, TxtLookup, build_message, dkim, dns_txt_lookup,
                   header_block_and_body)
from .dkim_bodyhash import BodyChunks, BodyHashes, body_params, expected_body_hash

# authres loads when a header is built or parsed, not by `aclmilter check` (lazy.py)
if TYPE_CHECKING:  # pragma: no cover  (at run time the module loads on first use: lazy.py)
    import authres
    from ..context import EvalContext
else:
    authres = lazy.module("authres")

log = logging.getLogger("aclmilter.arc")

#: At most this many ARC sets are verified (RFC 8617 §4.2.1 caps i= at 50).
MAX_INSTANCES = 50


class ArcStatus(enum.Enum):
    """The chain's validation status, with its A-R result word (RFC 8617 §4.4)."""

    PASS = "pass"
    FAIL = "fail"
    NONE = "none"            # no ARC sets at all
    TEMPERROR = "temperror"  # a key could not be fetched now: no verdict


@dataclass(frozen=True)
class ArcSet:
    """One ARC instance as verified."""

    instance: int
    seal_domain: str          # ARC-Seal d=
    seal_selector: str        # ARC-Seal s=
    ams_valid: bool
    seal_valid: bool
    cv: str                   # the cv= this seal claims
    aar: str                  # its ARC-Authentication-Results value (after "i=N;")

    @functools.cached_property
    def aar_results(self) -> tuple[Any, ...]:
        """authres's results of `aar`, parsed on first use and kept with the set (which lives
        in the memoised `arc` result: one parse per message); () if it does not parse."""
        try:
            return tuple(authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {self.aar}").results)
        except Exception:  # noqa: BLE001 - an AAR we cannot read says nothing
            return ()


@dataclass(frozen=True)
class ArcResult:
    status: ArcStatus
    reason: str = ""
    sets: tuple[ArcSet, ...] = ()       # instance 1 first

    @property
    def domains(self) -> tuple[str, ...]:
        """The sealing domains in instance order (oldest first): `$arc_domains`."""
        return tuple(s.seal_domain for s in self.sets)

    @property
    def oldest_pass(self) -> int:
        """The lowest instance whose ARC-Message-Signature verifies, 0 if none (`$arc_oldest_pass`)."""
        passing = [s.instance for s in self.sets if s.ams_valid]
        return min(passing) if passing and self.status is ArcStatus.PASS else 0


class _KeyTempError(Exception):
    """Raised from the key lookup on a DNS timeout or SERVFAIL; not a DKIMException, so it
    passes through dkimpy's arc_verify untouched."""


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return "" if value is None else str(value)


def _aar_text(raw: object) -> str:
    """The AAR value without its `i=N;` prefix, unfolded."""
    text = re.sub(r"\s+", " ", _text(raw)).strip()
    return re.sub(r"^i\s*=\s*\d+\s*;\s*", "", text)


@functools.cache
def _verifier_class() -> type:
    """dkimpy's ARC verifier, with each ARC-Message-Signature's body hash taken from the
    instance's `body_hashes` (a BodyHashes) instead of a canonical copy of a body in memory."""

    class StreamedBodyARC(dkim.ARC):
        body_hashes: BodyHashes

        def verify_sig_process(self, sig: dict, include_headers: list, sig_header: Any, dnsfunc: Any) -> bool:
            if b"bh" not in sig:             # an ARC-Seal: no body hash
                return super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)
            try:
                params = body_params(sig)
                expected = expected_body_hash(sig)
            except (ValueError, KeyError):
                # dkimpy's own path raises its error for these before it reads the body
                return super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)
            got = self.body_hashes(params)
            if got != expected:              # dkimpy's error for it, so the AMS is invalid as before
                raise dkim.ValidationError("body hash mismatch (got %r, expected %r)" % (
                    base64.b64encode(got), sig[b"bh"]))
            rest = {k: v for k, v in sig.items() if k != b"bh"}
            return super().verify_sig_process(rest, include_headers, sig_header, dnsfunc)

    return StreamedBodyARC


def _arc_verify(head: bytes, body: BodyChunks, dnsfunc: Any, min_key_bits: int) -> tuple[Any, list, Any]:
    """dkimpy's `arc_verify` (cv, per-instance results, reason) on the header block `head`,
    with the body hashes streamed from `body`."""
    verifier = _verifier_class()(head, logger=log, minkey=min_key_bits, timeout=5)
    verifier.body_hashes = BodyHashes(body)
    try:
        return verifier.verify(dnsfunc=dnsfunc)
    except dkim.DKIMException as exc:
        log.error("%s", exc)
        return dkim.CV_Fail, [], str(exc)


def verify_chain(message: bytes, txt_lookup: TxtLookup, min_key_bits: int = DEFAULT_MIN_KEY_BITS,
                 *, body: BodyChunks | None = None) -> ArcResult:
    """Verify the ARC chain of `message` (CRLF; with `body`, a function returning the body's
    chunks, `message` is the header block alone). Never raises for message or DNS trouble;
    a body spool that cannot be read back raises OSError, as reading it did before."""
    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            records = txt_lookup(name.decode("ascii", "replace").rstrip("."))
        except LookupDefer as exc:
            raise _KeyTempError(str(exc) or "DNS lookup failed") from None
        return records[0].encode("utf-8", "replace") if records else None

    head, chunks = header_block_and_body(message, body)
    try:
        cv, results, reason = _arc_verify(head, chunks, dnsfunc, min_key_bits)
    except _KeyTempError as exc:
        return ArcResult(ArcStatus.TEMPERROR, f"key lookup failed: {exc}")
    except OSError:   # the body spool could not be read back: the check's error, not the chain's
        raise
    except Exception as exc:  # noqa: BLE001 - hostile input is a failed chain, never a crash
        log.info("ARC chain unverifiable: %s", type(exc).__name__)
        return ArcResult(ArcStatus.FAIL, f"unverifiable chain ({type(exc).__name__})")
    sets = tuple(sorted((ArcSet(int(r.get("instance", 0)), _text(r.get("as-domain")).lower(),
                                _text(r.get("as-selector")), bool(r.get("ams-valid")), bool(r.get("as-valid")),
                                _text(r.get("cv")).lower(), _aar_text(r.get("aar-value")))
                         for r in results), key=lambda s: s.instance))
    if len(sets) > MAX_INSTANCES:
        return ArcResult(ArcStatus.FAIL, "too many ARC sets", sets)
    status = {dkim.CV_Pass: ArcStatus.PASS, dkim.CV_None: ArcStatus.NONE}.get(cv, ArcStatus.FAIL)
    return ArcResult(status, _text(reason), sets)


@registry.check("arc")
def arc_check(ctx: "EvalContext") -> ArcResult:
    """Verify the message's ARC chain once per transaction (DNS trouble is TEMPERROR)."""
    txn = ctx.txn
    assert txn is not None
    if not any(name.lower() == "arc-seal" for name, _v in txn.headers):
        return ArcResult(ArcStatus.NONE, "message is not ARC signed")
    leading = ctx.setting("dkim_header_leading_space") or "auto"
    head = build_message(txn.headers, b"", leading)
    return verify_chain(head, dns_txt_lookup(ctx.services.get("dns")),
                        int(ctx.setting("dkim_min_key_bits") or DEFAULT_MIN_KEY_BITS), body=txn.body.chunks)


def authres_fragment(ctx: "EvalContext") -> Any | None:
    """Our A-R's `arc=` result (RFC 8617 §10.2): for a message with ARC sets, or when the
    chain was verified anyway; None otherwise (an unsealed message gets no `arc=` clause)."""
    txn = ctx.txn
    if txn is None:
        return None
    if not ctx.has_result("arc") and not any(name.lower() == "arc-seal" for name, _v in txn.headers):
        return None
    res: ArcResult = ctx.check("arc")
    ip = ctx.conn.client.address
    newest = res.sets[-1] if res.sets else None
    safe = re.compile(r"^[A-Za-z0-9._-]{1,253}\Z")
    return authres.arc.ARCAuthenticationResult(
        result=res.status.value,
        header_oldest_pass=str(res.oldest_pass) if res.status is ArcStatus.PASS else None,
        header_as_d=newest.seal_domain if newest and safe.match(newest.seal_domain) else None,
        header_as_s=newest.seal_selector if newest and safe.match(newest.seal_selector) else None,
        smtp_remote_ip=ip if ip and all(c in "0123456789abcdefABCDEF.:" for c in ip) else None)
