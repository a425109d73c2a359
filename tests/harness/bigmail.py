"""Big messages for memory tests and benchmarks, and the RSS of a daemon while it takes them.

    body = make_body("whitespace", 5 << 20)
    sig = dkim_signature(HEADERS, body)              # milter-style (name, value), relaxed/relaxed
    base = rss(pid); reset_peak(pid); ...send...; growth = peak(pid) - base

The signature's body hash comes from aclmilter's streamed hasher (the test suite proves it
equals dkimpy's) and dkimpy signs the header block only, so building a 50 MB signed message
costs the client one copy of the body rather than dkimpy's many.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import dkim
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import parse_pem_private_key

from aclmilter.checks.dkim_bodyhash import body_hash

KEY_SEL1 = (Path(__file__).resolve().parent.parent / "fixtures" / "dmarc" / "dkim-sel1.private").read_bytes()

HEADERS = [("From", "Alice <alice@pass.dmarcx>"), ("To", "bob@rcpt.invalid"), ("Subject", "big message"),
           ("Message-ID", "<big@pass.dmarcx>"), ("Date", "Mon, 07 Dec 2026 04:00:00 +0000")]

_LINES = {
    # ordinary prose
    "text": b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n",
    # what the sender controls: runs of WSP everywhere, trailing WSP on every line
    "whitespace": b"a a  a \t a\t\t a    a \t \t a  \t" + b" " * 40 + b"\t\r\n",
    # a base64 attachment body: 76-character lines
    "base64": base64.b64encode(bytes(range(256)) * 3)[:76] + b"\r\n",
}
KINDS = tuple(_LINES)


def make_body(kind: str, size: int) -> bytes:
    """A CRLF body of about `size` bytes made of `kind` lines (text, whitespace, base64)."""
    line = _LINES[kind]
    return line * max(1, size // len(line))


def dkim_signature(headers: list[tuple[str, str]], body: bytes, domain: bytes = b"pass.dmarcx",
                   selector: bytes = b"sel1", key: bytes = KEY_SEL1) -> tuple[str, str]:
    """A relaxed/relaxed rsa-sha256 DKIM-Signature over From/To/Subject/Message-ID, as the
    (name, value) pair a milter receives (no space after the colon, folds kept)."""
    block = b"".join(f"{n}: {v}\r\n".encode() for n, v in headers) + b"\r\n"
    signer = dkim.DKIM(block)
    signer.signature_algorithm = b"rsa-sha256"
    signer.hasher = dkim.HASH_ALGORITHMS[b"rsa-sha256"]
    include = (b"from", b"to", b"subject", b"message-id")
    fields = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"), (b"d", domain),
              (b"i", b"@" + domain), (b"q", b"dns/txt"), (b"s", selector),
              (b"t", str(int(time.time())).encode()), (b"h", b" : ".join(include)),
              (b"bh", base64.b64encode(body_hash([body], "relaxed"))), (b"b", b"0" * 60)]
    value = signer.gen_header(fields, include, CanonicalizationPolicy.from_c_value(b"relaxed/relaxed"),
                              b"DKIM-Signature", parse_pem_private_key(key))
    return "DKIM-Signature", value.decode().rstrip("\r\n").lstrip(" ")


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def rss(pid: int) -> int:
    """Resident set size of `pid` in bytes now."""
    return _status(pid, "VmRSS")


def peak(pid: int) -> int:
    """Highest resident set size of `pid` in bytes since start or the last `reset_peak`."""
    return _status(pid, "VmHWM")


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
