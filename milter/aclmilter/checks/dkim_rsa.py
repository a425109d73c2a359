# SPDX-License-Identifier: GPL-3.0-or-later
"""DKIM signature verification with the RSA public-key step done by OpenSSL (issue 23).

dkimpy verifies an RSA signature in pure Python: a 2048-bit modular exponentiation with
Python integers and byte/integer conversions byte by byte — about 0.25 ms, a fifth of the
CPU of an authenticated message (bench/RESULTS.md). `cryptography` (Debian's
python3-cryptography) does the same operation in OpenSSL in a few microseconds.

`verifier_class()` returns a dkimpy `DKIM` subclass that keeps everything of dkimpy's
verification (tag checks, key retrieval and its errors, header canonicalisation, the
key-size rule) and replaces the final RSASSA-PKCS1-v1_5 check, and feeds the header hash
through `dkim_headerhash` (the same bytes, fewer of them canonicalised). It falls
back to dkimpy's own path whenever the two could differ: no `cryptography`, a key type
other than RSA, a signature whose length is not the modulus length or whose value is not
below the modulus, a body hash left to dkimpy, an unknown hash, or any error inside OpenSSL.
tests/unit/test_dkim_rsa.py proves both paths give the same verdicts.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import TYPE_CHECKING, Any

from .. import lazy
from .dkim_headerhash import hash_signed_headers

if TYPE_CHECKING:     # the real module for the type checker; at run time it loads on first use
    import dkim
else:
    dkim = lazy.module("dkim")
_WS = re.compile(rb"\s+")


@functools.cache
def _openssl() -> Any:
    """The cryptography pieces, or None when the package is missing."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
    except ImportError:
        return None
    return InvalidSignature, hashes, padding, rsa, utils


@functools.lru_cache(maxsize=1024)
def _public_key(modulus: int, exponent: int) -> Any:
    """The OpenSSL key object for (n, e), built once per key (keys repeat across messages)."""
    _inv, _hashes, _padding, rsa, _utils = _openssl()
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


def rsa_verify(public_key: dict, signature: bytes, digest: Any) -> bool | None:
    """RSASSA-PKCS1-v1_5 check of `digest` (a hashlib object) with OpenSSL.

    Returns True/False, or None when OpenSSL must not decide (caller uses dkimpy's check).
    """
    parts = _openssl()
    if parts is None:
        return None
    invalid, hashes, padding, _rsa, utils = parts
    algorithm = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}.get(digest.name.lower())
    modulus, exponent = public_key.get("modulus"), public_key.get("publicExponent")
    if algorithm is None or not isinstance(modulus, int) or not isinstance(exponent, int):
        return None
    if len(signature) != (modulus.bit_length() + 7) // 8 or int.from_bytes(signature, "big") >= modulus:
        return None        # dkimpy's integer arithmetic decides these odd cases its own way
    try:
        _public_key(modulus, exponent).verify(signature, digest.digest(), padding.PKCS1v15(),
                                              utils.Prehashed(algorithm()))
    except invalid:
        return False
    except Exception:  # noqa: BLE001 - e.g. a key OpenSSL refuses: let dkimpy judge it
        return None
    return True


@functools.lru_cache(maxsize=1024)
def _parsed_key(record: bytes) -> tuple:
    """dkimpy's parse of a key record, once per distinct record."""
    return dkim.evaluate_pk(b"", record)


@functools.cache
def verifier_class() -> type:
    """dkimpy's DKIM class, with the RSA step in OpenSSL when `cryptography` is available."""
    if _openssl() is None:
        return dkim.DKIM

    class OpenSslDKIM(dkim.DKIM):
        def verify_sig(self, sig: dict, include_headers: list, sig_header: Any, dnsfunc: Any) -> bool:
            # dkimpy's own steps (key from `dnsfunc`, a key it cannot parse is False), with the
            # parsed key kept per key record: the ASN.1 parse costs 0.1 ms and keys repeat
            name = sig[b"s"] + b"._domainkey." + sig[b"d"] + b"."
            record = dnsfunc(name, timeout=self.timeout)
            try:
                self.pk, self.keysize, self.ktag, self.seqtlsrpt = (
                    _parsed_key(bytes(record)) if record else dkim.evaluate_pk(name, record))
            except (dkim.KeyFormatError, binascii.Error) as exc:
                self.logger.error("%s", exc)
                return False
            return self.verify_sig_process(sig, include_headers, sig_header, dnsfunc)

        def verify_sig_process(self, sig: dict, include_headers: list, sig_header: Any, dnsfunc: Any) -> bool:
            if self.ktag != b"rsa" or b"bh" in sig or self.tlsrpt or self.seqtlsrpt \
                    or sig.get(b"a") not in dkim.HASH_ALGORITHMS:
                return super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)
            try:
                policy = dkim.CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
            except Exception:  # noqa: BLE001 - dkimpy turns this into its own error
                return super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)
            # dkimpy also hashes an extra From field when the signature covers From (its
            # Debian bug #644046); the same list must be hashed here
            headers = list(include_headers)
            if b"from" in headers:
                headers.append(b"from")
            digest = dkim.HASH_ALGORITHMS[sig[b"a"]]()
            signed = hash_signed_headers(digest, policy, self.headers, headers, sig_header)
            signature = base64.b64decode(_WS.sub(b"", sig[b"b"]))
            ok = rsa_verify(self.pk, signature, digest)
            if ok is None:
                return super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)
            self.signed_headers = signed
            if ok and self.keysize < self.minkey:
                raise dkim.KeyFormatError("public key too small: %d" % self.keysize)
            return ok

    return OpenSslDKIM
