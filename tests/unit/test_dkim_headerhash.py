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


# Review 2026-12-07 (rev9): every byte `\s` matches (VT and FF too), bare CR and LF, upper-case
# B=, non-ASCII and arbitrary bytes: the b= blanking must still be dkimpy's substitution.
wide_pieces = st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\x0b", b"\x0c", b"\r\n", b";", b"b", b"B", b"=",
                               b"h", b" b =", b";b\r\n\t=", b" b\x0b=", b";b\x0c =", b"\xc3\xa9", b"\x00", b"A", b"+", b"/", b"-"]) \
    | st.binary(max_size=3)


@settings(max_examples=4000, deadline=None)
@given(st.lists(wide_pieces, max_size=24).map(b"".join))
def test_b_value_blanked_as_dkimpy_does_on_any_bytes(value: bytes) -> None:
    assert without_b_value(value) == dkim.RE_BTAG.sub(b"\\1", value)


# Names whose relaxed form differs from the raw one only by trailing white space of any kind
# (bytes.rstrip strips VT, FF and CR as well), arbitrary short names and h= entries.
odd_names = st.sampled_from([b"From", b"FROM\x0b", b"from\x0c", b"From\r", b"To \t", b"to", b"\xc3\xa9",
                             b"Subject\t\x0b"]) | st.binary(min_size=1, max_size=2)
odd_values = st.binary(max_size=8) | st.sampled_from([b" a  b\r\n c", b"\r\n", b" \x0b x \x0c", b"\t\r\n\t"])
odd_include = st.lists(st.sampled_from([b"from", b"to", b"subject", b"from ", b""])
                       | st.binary(max_size=2).map(bytes.lower), max_size=8)
sig_names = st.sampled_from([b"DKIM-Signature", b"dkim-signature ", b"DKIM-Signature\x0b"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(odd_names, odd_values), max_size=8), odd_include, policies, sig_names,
       st.lists(wide_pieces, max_size=12).map(b"".join))
def test_header_hash_equals_dkimpys_on_odd_names(headers: list, names_signed: list, c: bytes,
                                                  sig_name: bytes, sig_value: bytes) -> None:
    policy = CanonicalizationPolicy.from_c_value(c)
    ours, theirs = hashlib.sha256(), hashlib.sha256()
    signed = hash_signed_headers(ours, policy, headers, list(names_signed), (sig_name, sig_value))
    expected = dkim.hash_headers(theirs, policy, policy.canonicalize_headers(headers), list(names_signed),
                                 (sig_name, sig_value), {})
    assert (ours.digest(), signed) == (theirs.digest(), expected)
