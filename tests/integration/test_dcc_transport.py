# SPDX-License-Identifier: GPL-3.0-or-later
"""The dccifd transport against the fake dccifd: UNIX, TCP over IPv4 and IPv6, failures."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from aclmilter.clients.dccifd import (DccifdClient, Envelope, ProtocolError, TransportError, Verdict,
                                      encode_envelope, encode_message, parse_address, parse_answer)
from tests.harness.fake_dccifd import Behaviour, FakeDccifd, header_of_size

pytestmark = pytest.mark.integration

ENV = Envelope("2001:db8::25", "", "mx.sender.example", "", (("bob@ours.example", "bob"),
                                                             ("carol@ours.example", "")))
HEAD = encode_envelope(("header",), ENV)
MESSAGE = encode_message([("From", "alice@sender.example"), ("Subject", "hello")], b"body\r\n")


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # AF_UNIX paths are limited to ~108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="dcc") as d:
        yield Path(d)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _servers(sockdir: Path) -> list[FakeDccifd]:
    out = [FakeDccifd.unix(sockdir / "dccifd"), FakeDccifd.tcp("127.0.0.1")]
    if _ipv6_loopback():
        out.append(FakeDccifd.tcp("::1"))
    return out


def test_exact_bytes_over_unix_tcp4_and_tcp6(sockdir: Path) -> None:
    if not _ipv6_loopback():
        pytest.fail("IPv6 loopback (::1) is required for this test")
    for fake in _servers(sockdir):
        with fake:
            client = DccifdClient(parse_address(fake.address), timeout=20)
            reply = client.exchange(HEAD, MESSAGE)
            [req] = fake.requests
            assert req.raw == HEAD + MESSAGE and req.half_closed
            assert req.client == "2001:db8::25" and req.sender == "<>"
            assert req.recipients == [("bob@ours.example", "bob"), ("carol@ours.example", "")]
            assert req.message == b"From: alice@sender.example\r\nSubject: hello\r\n\r\nbody\r\n"
            answer = parse_answer(reply, 2)
            assert answer.verdict is Verdict.ACCEPT and answer.header.startswith("X-DCC-FAKE-Metrics: ")


def test_folded_240_byte_header_arrives_whole(sockdir: Path) -> None:
    header = header_of_size(240)
    with FakeDccifd.unix(sockdir / "d") as fake:
        fake.script.append(Behaviour("G", header=header))
        reply = DccifdClient(parse_address(fake.address), 20).exchange(HEAD, MESSAGE)
    answer = parse_answer(reply, 2)
    assert answer.verdict is Verdict.GREYLIST and answer.header == header and len(header) == 240


def test_large_message_is_sent_completely(sockdir: Path) -> None:
    body = b"".join(b"line %06d of a large body\r\n" % i for i in range(40000))
    with FakeDccifd.unix(sockdir / "d") as fake:
        reply = DccifdClient(parse_address(fake.address), 60).exchange(HEAD, encode_message([], body))
        assert fake.requests[0].message == b"\r\n" + body
    assert parse_answer(reply, 2).verdict is Verdict.ACCEPT


def test_nobody_listening_is_a_transport_error(sockdir: Path) -> None:
    with pytest.raises(TransportError):
        DccifdClient(parse_address(str(sockdir / "absent")), 5).exchange(HEAD, MESSAGE)
    with FakeDccifd.tcp("127.0.0.1") as fake:
        address = parse_address(fake.address)
    with pytest.raises(TransportError):   # the port was just closed
        DccifdClient(address, 5).exchange(HEAD, MESSAGE)


def test_early_close_is_an_empty_reply(sockdir: Path) -> None:
    with FakeDccifd.unix(sockdir / "d") as fake:
        fake.script.append(Behaviour(mode="close"))
        reply = DccifdClient(parse_address(fake.address), 20).exchange(HEAD, MESSAGE)
    assert reply == b""
    with pytest.raises(ProtocolError):
        parse_answer(reply, 2)


def test_garbage_is_returned_for_the_parser_to_refuse(sockdir: Path) -> None:
    with FakeDccifd.unix(sockdir / "d") as fake:
        fake.script.append(Behaviour(mode="garbage", raw=b"\x00\xffnot dccifd\n"))
        reply = DccifdClient(parse_address(fake.address), 20).exchange(HEAD, MESSAGE)
    with pytest.raises(ProtocolError):
        parse_answer(reply, 2)


def test_slow_dccifd_hits_the_deadline(sockdir: Path) -> None:
    with FakeDccifd.unix(sockdir / "d") as fake:
        fake.script.append(Behaviour(mode="slow", delay=60))
        with pytest.raises(TransportError, match="did not answer"):
            DccifdClient(parse_address(fake.address), 0.5).exchange(HEAD, MESSAGE)


def test_early_t_while_we_are_still_sending(sockdir: Path) -> None:
    big = encode_message([], b"x" * (4 << 20))
    with FakeDccifd.unix(sockdir / "d") as fake:
        fake.script.append(Behaviour(mode="early_t"))
        try:
            reply = DccifdClient(parse_address(fake.address), 20).exchange(HEAD, big)
        except TransportError:
            return   # reset before the early answer could be read: still a temporary failure
    assert parse_answer(reply, 2).verdict is Verdict.TEMPFAIL


def test_fake_refuses_what_dccifd_refuses(sockdir: Path) -> None:
    """The fake hangs up (no reply) on requests a real dccifd would close on."""
    raw_requests = [
        b"header,grey-off\n1.2.3.4\nh\na@b\nc@d\n\nmsg",   # comma in options
        b"header\n1.2.3.4\nh\na@b\n<>\ruser\n\nmsg",       # <>\ruser
        b"header\n1.2.3.4\nh\na@b\nc@d\n",                 # EOF before the blank line
    ]
    with FakeDccifd.unix(sockdir / "d") as fake:
        client = DccifdClient(parse_address(fake.address), 20)
        for raw in raw_requests:
            assert client.exchange(raw, b"") == b""
        assert [bool(r.refused) for r in fake.requests] == [True, True, True]
