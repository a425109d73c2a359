# SPDX-License-Identifier: GPL-3.0-or-later
"""The labels of a verified DKIM signature (d=, s=, i=) are the tags dkimpy verified with.

dkimpy's tag names are case-sensitive: `D=` is an unknown tag it ignores, and the key comes
from `s=._domainkey.d=`. The lenient parse used before 2026-12-07 folded tag names to lower
case and kept the last one, so `d=signer; D=victim` passed as a signature of *victim*,
signed with the signer's key: a DMARC pass for any domain. These tests sign such fields with
the test key and check the reported domain against the one whose key verified them.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, utils
from dkim.canonicalization import CanonicalizationPolicy

from aclmilter.checks.dkim import DkimStatus, verify_message
from tests.fixtures.dmarc.ctxhelp import KEY_SEL1, message

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "dmarc"
SEL1_RECORD = "v=DKIM1; k=rsa; p=" + (FIX / "dkim-sel1.pub.b64").read_text().strip()


def _signed(tags: bytes) -> bytes:
    """message() with a DKIM-Signature made of `tags` plus h=, bh= and a valid b= (the
    fixture key of sel1._domainkey.pass.dmarcx), built by hand because dkimpy's signer
    writes only its own tags."""
    msg = message()
    headers, body = dkim.rfc822_parse(msg)
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    bh = base64.b64encode(hashlib.sha256(policy.canonicalize_body(body)).digest())
    value = b" v=1; a=rsa-sha256; c=relaxed/relaxed; " + tags + b" h=from:subject; bh=" + bh + b"; b="
    digest = hashlib.sha256()
    dkim.hash_headers(digest, policy, policy.canonicalize_headers(headers), [b"from", b"subject", b"from"],
                      (b"DKIM-Signature", value), {})
    key = serialization.load_pem_private_key(KEY_SEL1, password=None)
    b = key.sign(digest.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    return b"DKIM-Signature:" + value + base64.b64encode(b) + b"\r\n" + msg


def _txt(name: str) -> list[str]:
    return [SEL1_RECORD] if name.rstrip(".") == "sel1._domainkey.pass.dmarcx" else []


@pytest.mark.parametrize("tags", [
    b"d=pass.dmarcx; s=sel1; D=victim.example;",
    b"D=victim.example; d=pass.dmarcx; s=sel1;",
    b"d=pass.dmarcx; s=sel1; I=@victim.example; S=other;",
])
def test_upper_case_tags_do_not_relabel_a_verified_signature(tags: bytes) -> None:
    raw = _signed(tags)
    # dkimpy itself verifies it with pass.dmarcx's key: the signature is genuinely valid
    assert dkim.DKIM(raw).verify(dnsfunc=lambda n, timeout=5: _txt(n.decode())[0].encode())
    (sig,) = verify_message(raw, _txt).signatures
    assert sig.status is DkimStatus.PASS
    assert (sig.domain, sig.selector, sig.identity) == ("pass.dmarcx", "sel1", "@pass.dmarcx")


def test_the_fixture_signature_passes_without_extra_tags() -> None:
    # the signing helper is sound: the same fields without an upper-case tag pass as well
    (sig,) = verify_message(_signed(b"d=pass.dmarcx; s=sel1; i=@pass.dmarcx;"), _txt).signatures
    assert sig.status is DkimStatus.PASS and sig.domain == "pass.dmarcx"


@pytest.mark.parametrize("tags", [
    b"d=pass.dmarcx; s=sel1; D=victim.example; x=1;",      # expired: dkimpy refuses it
    b"D=victim.example; d=pass.dmarcx; s=sel1; x=1;",
])
def test_upper_case_tags_do_not_relabel_a_refused_signature(tags: bytes) -> None:
    # a signature dkimpy refuses is labelled by our lenient reader: it too reads tag names
    # case-sensitively and takes the first of a name, so the label is the real d=
    (sig,) = verify_message(_signed(tags), _txt).signatures
    assert sig.status is DkimStatus.PERMERROR
    assert sig.domain == "pass.dmarcx"
    assert sig.identity == "@pass.dmarcx"
