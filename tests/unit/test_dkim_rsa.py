# SPDX-License-Identifier: GPL-3.0-or-later
"""The OpenSSL RSA step (checks/dkim_rsa.py) gives dkimpy's verdict for every signature:
valid ones (both canonicalisations, sha256 and sha1), tampered headers and signatures, keys
of another signer, missing, malformed and too small keys."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest

from aclmilter.checks.dkim_rsa import rsa_verify, verifier_class
from tests.fixtures.dmarc.ctxhelp import KEY_SEL1, message, sign

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "dmarc"
KEYS = {"sel1": (FIX / "dkim-sel1.pub.b64").read_text().strip(),
        "third": (FIX / "dkim-third.pub.b64").read_text().strip()}


def _verdict(cls: type, raw: bytes, record: bytes | None, minkey: int = 1024) -> object:
    """What verify_sig says for the first signature (the body hash left out, as checks/dkim.py
    does), or the exception type it raises."""
    v = cls(raw, minkey=minkey)
    sig, include, sigheaders = v.verify_headerprep(0)
    header_sig = {k: x for k, x in sig.items() if k != b"bh"}
    try:
        return v.verify_sig(header_sig, include, sigheaders[0], lambda name, timeout=5: record)
    except Exception as exc:  # noqa: BLE001 - the type is the verdict being compared
        return type(exc).__name__


def _record(key: str) -> bytes:
    return f"v=DKIM1; k=rsa; p={key}".encode()


def _flip_b(raw: bytes) -> bytes:
    head, sep, rest = raw.partition(b"b=")
    # change one base64 character of the signature value (after the bh= tag)
    i = rest.index(b"b=") + 2 if b"b=" in rest else 0
    ch = rest[i:i + 1]
    return head + sep + rest[:i] + (b"A" if ch != b"A" else b"B") + rest[i + 1:]


CASES = {
    "relaxed": (sign(message()), _record(KEYS["sel1"])),
    "simple": (sign(message(), canon=(b"simple", b"simple")), _record(KEYS["sel1"])),
    "header tampered": (sign(message()).replace(b"Subject: hello", b"Subject: HELLO"), _record(KEYS["sel1"])),
    "signature tampered": (_flip_b(sign(message())), _record(KEYS["sel1"])),
    "another signer's key": (sign(message()), _record(KEYS["third"])),
    "no key": (sign(message()), None),
    "malformed key": (sign(message()), b"v=DKIM1; k=rsa; p=!!notbase64"),
    "truncated key": (sign(message()), _record(KEYS["sel1"][:60])),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_verdict_as_dkimpy(case: str) -> None:
    raw, record = CASES[case]
    assert _verdict(verifier_class(), raw, record) == _verdict(dkim.DKIM, raw, record)


def test_sha1_and_key_size_rule() -> None:
    raw = dkim.sign(message(), b"sel1", b"pass.dmarcx", KEY_SEL1, signature_algorithm=b"rsa-sha1",
                    include_headers=[b"from", b"subject"]) + message()
    for minkey in (1024, 4096):       # 4096: the 2048-bit key is too small -> KeyFormatError
        assert _verdict(verifier_class(), raw, _record(KEYS["sel1"]), minkey) == \
            _verdict(dkim.DKIM, raw, _record(KEYS["sel1"]), minkey)
    assert _verdict(verifier_class(), raw, _record(KEYS["sel1"])) is True


def test_the_openssl_path_decides() -> None:
    """Not a fallback in disguise: OpenSSL itself answers True and False (None would mean
    "left to dkimpy")."""
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    private = serialization.load_pem_private_key(KEY_SEL1, password=None)
    numbers = private.public_key().public_numbers()
    pk = {"modulus": numbers.n, "publicExponent": numbers.e}
    signature = private.sign(b"signed data", padding.PKCS1v15(), hashes.SHA256())
    assert verifier_class() is not dkim.DKIM
    assert rsa_verify(pk, signature, hashlib.sha256(b"signed data")) is True
    assert rsa_verify(pk, signature, hashlib.sha256(b"other data")) is False
    assert rsa_verify(pk, signature[:-1], hashlib.sha256(b"signed data")) is None   # dkimpy decides
