"""DKIM body hashes (RFC 6376 §3.4.3-§3.4.5, §3.7) computed from a stream of body chunks.

dkimpy canonicalises and hashes a body held in memory in one piece (a relaxed body costs
several whole copies, one per regular expression), so a large or whitespace-heavy message
costs many times its size. `body_hash(chunks, canon, algorithm, length)` gives the same digest
as dkimpy while holding at most one chunk plus a few bytes: every stage below keeps back only
the bytes whose canonical form depends on what comes next.

The stages follow dkimpy exactly, because the digests must match what it would compute:
  1. line ends: every LF, with or without a CR before it, becomes CRLF (dkimpy re-joins the
     body's lines with CRLF when it parses a message);
  2. relaxed only: WSP before a line end is removed, every other run of WSP becomes one SP;
  3. empty lines at the end are dropped and the body ends with exactly one CRLF (simple: an
     empty body is CRLF; relaxed: an empty body stays empty);
  4. `l=`: only the first `length` canonical bytes are hashed.

`BodyHashes` keeps the digests of one message by (canonicalization, hash, l=), so DKIM
signatures and ARC-Message-Signatures with the same parameters read the body once.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import base64
import re
from typing import Callable, Iterable

from .. import lazy

# OpenSSL's hashlib costs ~5 ms to import: paid by the first body hashed, not by `aclmilter check`
hashlib = lazy.module("hashlib")

BodyChunks = Callable[[], Iterable[bytes]]   # returns a fresh iterator over the body each call
BodyParams = tuple[str, str, "int | None"]     # (body canonicalization, hash, l=)

#: hashlib constructors by the `a=` tag's hash part.
HASHES: dict[str, str] = {"sha256": "sha256", "sha1": "sha1"}

# Both patterns match only what changes (a LF without CR; a WSP run other than one SP): a
# typical line has several single spaces, and replacing each by itself was a third of the
# cost of a relaxed body hash.
_BARE_LF = re.compile(rb"(?<!\r)\n")
_WSP_RUN = re.compile(rb"\t[ \t]*| [ \t]+")
_CRLF_RUN = 64 * 1024
_WSP = re.compile(rb"\s+")


class BodyHasher:
    """Feed body chunks with `update`, then `digest()` once. Canon is "simple" or "relaxed"."""

    def __init__(self, canon: str, algorithm: str = "sha256", length: int | None = None) -> None:
        if canon not in ("simple", "relaxed"):
            raise ValueError(f"unknown body canonicalization {canon!r}")
        self.relaxed = canon == "relaxed"
        self._hash = getattr(hashlib, HASHES[algorithm])()
        self._left = length              # bytes still to hash under l=, None: no limit
        self._cr = b""                   # stage 1: a CR that may start a CRLF
        self._held = b""                 # stage 2: trailing WSP (compressed) and/or CR
        self._blank_lines = 0            # stage 3: CRLFs not yet known to be inside the body
        self._any = False                # stage 3: something other than CRLFs was hashed

    # -- stage 4: the hash, cut at l= ---------------------------------------------------------
    def _hash_out(self, data: bytes) -> None:
        if self._left is not None:
            if self._left <= 0:
                return
            data = data[:self._left]
            self._left -= len(data)
        self._hash.update(data)

    @property
    def done(self) -> bool:
        """True once l= bytes have been hashed (the rest of the body cannot change the digest)."""
        return self._left is not None and self._left <= 0

    # -- stage 3: trailing empty lines ----------------------------------------------------------
    def _emit(self, data: bytes) -> None:
        if not data:
            return
        stripped = data.rstrip(b"\r\n")
        # rstrip also eats a lone CR before the CRLF run; give back whatever is not whole CRLFs.
        tail = data[len(stripped):]
        pairs = 0
        while tail.endswith(b"\r\n", 0, len(tail) - 2 * pairs):
            pairs += 1
        body = data[:len(data) - 2 * pairs]
        if body:
            self._flush_blank_lines()
            self._hash_out(body)
            self._any = True
        self._blank_lines += pairs

    def _flush_blank_lines(self) -> None:
        while self._blank_lines and not self.done:
            n = min(self._blank_lines, _CRLF_RUN)
            self._hash_out(b"\r\n" * n)
            self._blank_lines -= n
        self._blank_lines = 0

    # -- stage 2: relaxed whitespace -------------------------------------------------------------
    def _canon(self, data: bytes, final: bool = False) -> None:
        if not self.relaxed:
            self._emit(data)
            return
        data = self._held + data
        if final:
            held = b""
        else:
            end = len(data) - 1 if data.endswith(b"\r") else len(data)
            held = data[len(data[:end].rstrip(b" \t")):]
        head = data[:len(data) - len(held)]
        # Line by line with rstrip, not one `[ \t]+\r\n` pattern: that pattern backtracks
        # over a long run of WSP not followed by CRLF (quadratic in the run the sender chose).
        lines = head.split(b"\r\n")
        head = b"\r\n".join([line.rstrip(b" \t") for line in lines[:-1]] + lines[-1:])
        if b"\t" in head or b"  " in head:      # (a memchr each: cheaper than the pattern's scan)
            head = _WSP_RUN.sub(b" ", head)
        # A run of WSP held back becomes one SP either way (or vanishes before CRLF), so
        # keeping it compressed bounds what is held to two bytes.
        self._held = (b" " if held[:1] in (b" ", b"\t") else b"") + (b"\r" if held.endswith(b"\r") else b"")
        self._emit(head)

    # -- stage 1: line ends -----------------------------------------------------------------------
    def update(self, chunk: bytes) -> None:
        """Add the next piece of the body as received."""
        if not chunk or self.done:
            return
        data = self._cr + bytes(chunk)
        self._cr = b"\r" if data.endswith(b"\r") else b""
        if self._cr:
            data = data[:-1]
        if data.count(b"\n") != data.count(b"\r\n"):
            data = _BARE_LF.sub(b"\r\n", data)
        self._canon(data)

    def digest(self) -> bytes:
        """Finish: flush what was held and return the raw digest."""
        if self._cr:
            self._canon(self._cr)
            self._cr = b""
        if self.relaxed and self._held:
            self._canon(b"", final=True)
        if self._any or not self.relaxed:
            # dkimpy: a body that does not end in CRLF gets one; trailing empty lines go.
            self._blank_lines = 0
            self._hash_out(b"\r\n")
        return self._hash.digest()


def body_hash(chunks: Iterable[bytes], canon: str, algorithm: str = "sha256",
              length: int | None = None) -> bytes:
    """Return the raw body-hash digest of the body given as `chunks` (see the module text).

    Raises ValueError for an unknown canonicalization and KeyError for an unknown hash.
    Stops reading once `length` canonical bytes are hashed.
    """
    hasher = BodyHasher(canon, algorithm, length)
    for chunk in chunks:
        hasher.update(chunk)
        if hasher.done:
            break
    return hasher.digest()


def body_params(sig: dict[bytes, bytes]) -> BodyParams:
    """(canonicalization, hash, l=) of a signature dkimpy accepted; ValueError if unusable."""
    c = sig.get(b"c", b"simple/simple").split(b"/")
    if len(c) not in (1, 2) or any(x not in (b"simple", b"relaxed") for x in c):
        raise ValueError(f"invalid c= value {b'/'.join(c)!r}")
    algorithm = sig[b"a"].partition(b"-")[2].decode("ascii", "replace")
    length = int(sig[b"l"]) if b"l" in sig else None
    return (c[1] if len(c) == 2 else b"simple").decode(), algorithm, length


def expected_body_hash(sig: dict[bytes, bytes]) -> bytes:
    """The digest a signature's bh= names, decoded as dkimpy decodes it (white space
    removed); binascii.Error (a ValueError) when it is not base64."""
    return base64.b64decode(_WSP.sub(b"", sig[b"bh"]))


class BodyHashes:
    """The body hashes of one message: each distinct (canonicalization, hash, l=) is computed
    once, from a fresh pass over `body`'s chunks."""

    def __init__(self, body: BodyChunks) -> None:
        self._body = body
        self._digests: dict[BodyParams, bytes] = {}

    def __call__(self, params: BodyParams) -> bytes:
        """The raw digest for `params`. Raises KeyError for an unknown hash, OSError when the
        body cannot be read back."""
        if params not in self._digests:
            self._digests[params] = body_hash(self._body(), *params)
        return self._digests[params]
