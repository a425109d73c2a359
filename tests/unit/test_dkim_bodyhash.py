# SPDX-License-Identifier: GPL-3.0-or-later
"""The streamed DKIM body hash equals dkimpy's, for any body, chunking and l=."""

from __future__ import annotations

import hashlib
import random

import pytest
from dkim import rfc822_parse
from dkim.canonicalization import Relaxed, Simple

from aclmilter.checks.dkim_bodyhash import BodyHasher, body_hash
from aclmilter.state import BodySpool

PIECES = [b" ", b"\t", b"\r", b"\n", b"\r\n", b"a", b"b", b"  ", b"\r\n\r\n", b" \r\n", b"\t\r", b"x y"]


def _dkimpy(body: bytes, canon: str, length: int | None) -> bytes:
    _, parsed = rfc822_parse(b"A: b\r\n\r\n" + body)     # dkimpy's own body split
    canonical = (Relaxed if canon == "relaxed" else Simple).canonicalize_body(parsed)
    return hashlib.sha256(canonical if length is None else canonical[:length]).digest()


def _chunked(rng: random.Random, body: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(len(body) + 1), min(len(body) + 1, rng.randint(0, 6))))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


def test_corpus_of_random_bodies_matches_dkimpy():
    rng = random.Random(2406)
    for _ in range(3000):
        body = b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40)))
        for canon in ("simple", "relaxed"):
            for length in (None, 0, 1, 5, 17):
                assert body_hash(_chunked(rng, body), canon, "sha256", length) == _dkimpy(body, canon, length), \
                    (canon, length, body)


@pytest.mark.parametrize("body", [b"", b"\r\n", b"\r\n\r\n\r\n", b"abc", b"abc  ", b"abc \r", b" \t \r\n x \t\r\n\r\n",
                                  b"a\nb\r\n", b"\r\n" * 70000 + b"x", b" \t" * 2500 + b"end\r\n"])
@pytest.mark.parametrize("canon", ["simple", "relaxed"])
def test_edge_bodies(body, canon):
    assert body_hash([body], canon) == _dkimpy(body, canon, None)
    assert body_hash([body[i:i + 7] for i in range(0, len(body), 7)] if len(body) < 1000 else [body],
                     canon) == _dkimpy(body, canon, None)


def test_held_bytes_stay_small_for_a_whitespace_run_without_line_ends():
    hasher = BodyHasher("relaxed")
    for _ in range(1000):
        hasher.update(b" \t" * 4096)
    assert len(hasher._held) <= 2
    hasher.update(b"x\r\n")
    assert hasher.digest() == hashlib.sha256(b" x\r\n").digest()


def test_spool_chunks_read_the_file_back_without_moving_the_write_position():
    spool = BodySpool(threshold=10)
    spool.write(b"0123456789")
    spool.write(b"abcdef")                     # crosses the threshold: spooled to a file
    assert spool.spooled and b"".join(spool.chunks(4)) == b"0123456789abcdef"
    spool.write(b"XYZ")
    assert b"".join(spool.chunks(5)) == b"0123456789abcdefXYZ" == spool.read()
    spool.close()
    small = BodySpool()
    small.write(b"hello")
    assert list(small.chunks(2)) == [b"he", b"ll", b"o"]
