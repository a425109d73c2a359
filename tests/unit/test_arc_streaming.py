# SPDX-License-Identifier: GPL-3.0-or-later
"""ARC verification with the ARC-Message-Signature body hashes streamed from the body's
chunks (checks/arc.py, as DKIM does) gives dkimpy's own `arc_verify` verdicts, reads the body
once per distinct c=/a=/l=, and each set's ARC-Authentication-Results are parsed once."""

from __future__ import annotations

from typing import Iterator

import dkim
import pytest

from aclmilter.checks.arc import ArcSet, ArcStatus, verify_chain
from aclmilter.checks.dkim import split_message
from aclmilter.checks.dmarc_arc import history_lines
from aclmilter.errors import LookupDefer
from tests.fixtures.dmarc.ctxhelp import arc_seal, arc_txt, message, sign


def _dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
    found = arc_txt(name.decode().rstrip("."))
    return found[0].encode() if found else None


BODY = b"Hi  there.\t \r\nsecond line \r\n\r\n\r\n"
ONE_HOP = arc_seal(sign(message(body=BODY)), "list.arcx")
TWO_HOPS = arc_seal(ONE_HOP, "fwd.arcx")
CASES = {
    "one hop": ONE_HOP,
    "two hops": TWO_HOPS,
    "body changed after the seal": TWO_HOPS + b"footer\r\n",
    "body changed before the second seal": arc_seal(ONE_HOP + b"list footer\r\n", "fwd.arcx"),
    "trailing blank lines added": TWO_HOPS + b"\r\n\r\n",
    "whitespace changed (relaxed keeps it)": TWO_HOPS.replace(b"Hi  there.", b"Hi \t there."),
    "bare LF line ends": TWO_HOPS.replace(b"second line \r\n", b"second line \n"),
    "empty body": arc_seal(sign(message(body=b"")), "list.arcx"),
    "spaces added at line ends": TWO_HOPS.replace(b"second line \r\n", b"second line \t  \r\n"),
    "text inserted": TWO_HOPS.replace(b"second line", b"second  line!"),
    "AMS tampered": TWO_HOPS.replace(b"bh=", b"bh=A", 1),
    "not sealed": sign(message()),
}


def _chunks(body: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i:i + size]


def _dkimpy(raw: bytes) -> tuple[str, list[tuple[int, bool, bool]]]:
    cv, results, _reason = dkim.arc_verify(raw, dnsfunc=_dnsfunc)
    status = {dkim.CV_Pass: "pass", dkim.CV_None: "none"}.get(cv, "fail")
    return status, sorted((int(r["instance"]), bool(r["ams-valid"]), bool(r["as-valid"])) for r in results)


def _ours(raw: bytes, size: int | None) -> tuple[str, list[tuple[int, bool, bool]]]:
    if size is None:
        res = verify_chain(raw, arc_txt)
    else:
        head, body = split_message(raw)
        res = verify_chain(head, arc_txt, body=lambda: _chunks(body, size))
    return res.status.value, [(s.instance, s.ams_valid, s.seal_valid) for s in res.sets]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("size", [None, 1, 3, 64 * 1024])
def test_same_verdicts_as_dkimpy(case: str, size: int | None) -> None:
    assert _ours(CASES[case], size) == _dkimpy(CASES[case])


def test_the_cases_cover_valid_and_invalid_signatures() -> None:
    verdicts = {case: _dkimpy(raw) for case, raw in CASES.items()}
    assert verdicts["two hops"] == ("pass", [(1, True, True), (2, True, True)])
    assert verdicts["body changed after the seal"][1][-1][1] is False
    assert verdicts["AMS tampered"][0] == "fail"


def test_the_body_is_read_once_for_sets_of_equal_parameters() -> None:
    head, body = split_message(TWO_HOPS)
    reads: list[int] = []

    def chunks() -> Iterator[bytes]:
        reads.append(1)
        return _chunks(body, 5)

    res = verify_chain(head, arc_txt, body=chunks)
    assert res.status is ArcStatus.PASS and len(res.sets) == 2
    assert len(reads) == 1


def test_key_lookup_trouble_is_temperror_and_the_body_is_not_read() -> None:
    def dead(name: str) -> list[str]:
        raise LookupDefer("timeout")

    head, _body = split_message(TWO_HOPS)

    def never() -> Iterator[bytes]:
        raise AssertionError("body read though no key could be fetched")

    assert verify_chain(head, dead, body=never).status is ArcStatus.TEMPERROR


def test_an_unreadable_body_is_the_checks_error_not_a_failed_chain() -> None:
    head, _body = split_message(TWO_HOPS)

    def broken() -> Iterator[bytes]:
        raise OSError("spool gone")

    with pytest.raises(OSError):
        verify_chain(head, arc_txt, body=broken)


def test_aar_is_parsed_once_per_set() -> None:
    res = verify_chain(TWO_HOPS, arc_txt)
    newest = res.sets[-1]
    assert newest.aar_results is newest.aar_results
    assert [r.method for r in newest.aar_results] == ["arc", "dkim"]
    assert '"ip":"192.0.2.1"' in history_lines(None, res)[1]   # type: ignore[arg-type]
    broken = ArcSet(1, "x.example", "s", True, True, "none", "not ( an A-R")
    assert broken.aar_results == ()
