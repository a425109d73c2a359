# SPDX-License-Identifier: GPL-3.0-or-later
"""dccifd codec: exact request bytes, every answer shape, and refusal of unsafe text."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from tests.strategies import utf8_characters

from aclmilter.clients.dccifd import (MAX_RECIPIENTS, Address, Envelope, ProtocolError, RcptVerdict,
                                      UnsafeField, Verdict, encode_envelope, encode_message,
                                      parse_address, parse_answer, parse_options)
from tests.harness.fake_dccifd import fold_header, header_of_size

ENV = Envelope("192.0.2.25", "mx.sender.example", "mx.sender.example", "alice@sender.example",
               (("bob@ours.example", "bob"), ("carol@ours.example", "")))


# ---- request -------------------------------------------------------------------------------
def test_envelope_bytes_match_the_protocol_transcript() -> None:
    assert encode_envelope(("header",), ENV) == (
        b"header\n"
        b"192.0.2.25\rmx.sender.example\n"
        b"mx.sender.example\n"
        b"alice@sender.example\n"
        b"bob@ours.example\rbob\n"
        b"carol@ours.example\n"
        b"\n")


def test_null_sender_unknown_client_no_options() -> None:
    env = Envelope("", "ignored.example", "", "", (("postmaster@ours.example", ""),))
    # An unknown IP is an empty line; a name without an IP is not allowed, so it is dropped.
    assert encode_envelope((), env) == b"\n\n\n<>\npostmaster@ours.example\n\n"


def test_ipv6_client_is_sent_compressed_without_prefix() -> None:
    env = Envelope("2001:0db8:0000:0000:0000:0000:0000:0001", "", "h", "a@b.example", (("c@d.example", ""),))
    assert encode_envelope(("header", "grey-off"), env).split(b"\n")[:2] == [b"header grey-off", b"2001:db8::1"]


def test_zero_recipients_still_ends_with_a_blank_line() -> None:
    env = Envelope("192.0.2.1", "", "h", "a@b.example", ())
    assert encode_envelope(("header",), env) == b"header\n192.0.2.1\nh\na@b.example\n\n"


@pytest.mark.parametrize("field", ["client_name", "helo", "sender", "rcpt", "user"])
@pytest.mark.parametrize("bad", ["\r", "\n", "\0", "x\r\nheader"])
def test_line_breaks_in_any_field_are_refused(field: str, bad: str) -> None:
    values = {"client_name": "n.example", "helo": "h.example", "sender": "a@b.example",
              "rcpt": "c@d.example", "user": "c"}
    values[field] = values[field] + bad
    env = Envelope("192.0.2.1", values["client_name"], values["helo"], values["sender"],
                   ((values["rcpt"], values["user"]),))
    with pytest.raises(UnsafeField):
        encode_envelope(("header",), env)


def test_bad_ip_empty_recipient_and_too_many_recipients_are_refused() -> None:
    with pytest.raises(UnsafeField):
        encode_envelope((), Envelope("192.0.2.1\rforged", "", "h", "a@b", (("c@d", ""),)))
    with pytest.raises(UnsafeField):
        encode_envelope((), Envelope("not-an-ip", "", "h", "a@b", (("c@d", ""),)))
    with pytest.raises(UnsafeField):
        encode_envelope((), Envelope("192.0.2.1", "", "h", "a@b", (("", ""),)))
    many = tuple((f"u{i}@d.example", "") for i in range(MAX_RECIPIENTS + 1))
    with pytest.raises(UnsafeField):
        encode_envelope((), Envelope("192.0.2.1", "", "h", "a@b", many))
    with pytest.raises(UnsafeField):
        encode_envelope((), Envelope("192.0.2.1", "", "h" * 9000, "a@b", (("c@d", ""),)))


@given(hs.text(alphabet=utf8_characters("\r\n\0"), max_size=40),
       hs.text(max_size=40))
def test_every_request_has_exactly_the_framing_lines(helo: str, sender: str) -> None:
    """Whatever the text, the request either is refused or has 6 LF-ended lines + blank line."""
    env = Envelope("192.0.2.1", "", helo, sender, (("c@d.example", ""),))
    try:
        raw = encode_envelope(("header",), env)
    except UnsafeField:
        assert any(c in sender for c in "\r\n\0")
        return
    assert raw.endswith(b"\n\n") and raw.count(b"\n") == 6
    assert b"\r" not in raw


def test_message_is_rebuilt_with_crlf_and_a_space_after_the_colon() -> None:
    headers = [("Received", "from a\n\tby b"), ("Subject", "hi"), ("X-Empty", "")]
    assert encode_message(headers, b"line1\r\n.dot\r\n") == (
        b"Received: from a\r\n\tby b\r\nSubject: hi\r\nX-Empty: \r\n\r\nline1\r\n.dot\r\n")
    assert encode_message([("A", "x\r\n y")], b"") == b"A: x\r\n y\r\n\r\n"


# ---- settings mini-languages -----------------------------------------------------------------
def test_addresses() -> None:
    assert parse_address("/var/dcc/dccifd") == Address(path="/var/dcc/dccifd")
    assert parse_address(" 127.0.0.1 10045 ") == Address(host="127.0.0.1", port=10045)
    v6 = parse_address("::1 10045")
    assert (v6.host, v6.port, v6.family) == ("::1", 10045, socket.AF_INET6)
    assert parse_address("[::1] 7").host == "::1"
    assert parse_address("/x").family == socket.AF_UNIX
    for bad in ("dccifd", "localhost 10045", "127.0.0.1", "127.0.0.1 0", "127.0.0.1 70000",
                "127.0.0.1 port", "1.2.3.4 5 6"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_options() -> None:
    assert parse_options("Header  grey-off\tquery") == ("header", "grey-off", "query")
    assert parse_options("") == ()
    for bad in ("header,grey-off", "headers", "header\nspam"):
        with pytest.raises(ValueError):
            parse_options(bad)


# ---- answers ---------------------------------------------------------------------------------
HDR = "X-DCC-EXAMPLE-Metrics: mx.ours.example 1234; Body=1 Fuz1=1 Fuz2=1"


@pytest.mark.parametrize("letter,verdict", [("A", Verdict.ACCEPT), ("R", Verdict.REJECT),
                                            ("G", Verdict.GREYLIST), ("T", Verdict.TEMPFAIL),
                                            ("S", Verdict.SOME)])
def test_every_result_letter(letter: str, verdict: Verdict) -> None:
    rc = "G" if letter == "G" else "R" if letter in "RT" else "A"
    answer = parse_answer(f"{letter}\n{rc}{rc}\n{HDR}\n\n".encode(), 2)
    assert answer.verdict is verdict
    assert answer.recipients == (RcptVerdict(rc), RcptVerdict(rc))
    assert answer.header == HDR


def test_per_recipient_line_may_disagree_with_the_overall_result() -> None:
    answer = parse_answer(f"A\nRAG\n{HDR}\n\n".encode(), 3)
    assert answer.recipients == (RcptVerdict.REJECT, RcptVerdict.ACCEPT, RcptVerdict.GREYLIST)


def test_folded_240_byte_header_is_kept_whole() -> None:
    header = header_of_size(240)
    assert len(header) == 240 and "\n\t" in header
    answer = parse_answer(f"A\nA\n{header}\n\n".encode(), 1)
    assert answer.header == header


def test_whitelist_header_zero_recipients_and_cksums() -> None:
    assert parse_answer(b"A\nA\nX-DCC--Metrics: mx.ours.example; whitelist\n\n", 1).header == \
        "X-DCC--Metrics: mx.ours.example; whitelist"
    none = parse_answer(b"A\n\n\n", 0)
    assert (none.verdict, none.recipients, none.header) == (Verdict.ACCEPT, (), None)
    ck = parse_answer(f"A\nA\n{HDR}\nreported: 0 checksum\nBody: 1\n\n".encode(), 1, ("cksums",))
    assert ck.header == HDR and ck.extra == ("reported: 0 checksum", "Body: 1")


def test_early_t_without_recipient_line() -> None:
    answer = parse_answer(b"T\n\n", 3)
    assert answer.verdict is Verdict.TEMPFAIL and answer.recipients == ()


def test_no_header_options_and_body_mode() -> None:
    assert parse_answer(b"R\nR\n", 1, ()).header is None
    with pytest.raises(ProtocolError):
        parse_answer(b"R\nR\nX-DCC-x-Metrics: a\n\n", 1, ())
    folded = fold_header("X-DCC-B-Metrics", ["h", "1;", "Body=1"] + ["tok%03d" % i for i in range(15)])
    body = ("Subject: s\r\n" + folded.replace("\n", "\r\n") + "\r\n\r\nX-DCC-B-Metrics: not a header\r\n").encode()
    answer = parse_answer(b"A\nA\n" + body, 1, ("body",))
    assert answer.header == folded


@pytest.mark.parametrize("data", [
    b"",                                  # early close
    b"A",                                 # no line end
    b"A\n",                               # no recipient line
    b"A\nAA",                             # recipient line not ended
    b"X\nA\n\n",                          # unknown letter
    b"AA\nA\n\n",                         # two letters on the result line
    b"a\nA\n\n",                          # lower case
    b"A\nA\n\n",                          # one letter for two recipients
    b"A\nAAA\n\n",                        # three for two
    b"A\nAT\n\n",                         # T is not a per-recipient letter
    b"A\nAA\nX-DCC-x-Metrics: a",         # header not ended
    b"A\nAA\nX-DCC-x-Metrics: a\n",       # no closing blank line
    b"A\nAA\nSubject: x\n\n",             # not an X-DCC header
    b"A\nAA\nX-DCC-x-Metrics: a\r\n\n",   # CR inside the header
    b"A\nAA\nX-DCC-x-Metrics: a\nInjected: b\n\n",   # a second header line
    b"A\nAA\nX-DCC-x-Metrics: a\n\nmore\n",          # bytes after the end
    b"A\nAA\nX-DCC-x-Metrics: \xff\n\n",             # not ASCII
    b"A\nAA\nX-DCC-x-Metrics: a\x00b\n\n",           # NUL
    b"HTTP/1.1 400 Bad Request\r\n\r\n",             # garbage
])
def test_anything_else_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_answer(data, 2)


@given(hs.binary(max_size=200))
def test_parser_never_crashes_on_garbage(data: bytes) -> None:
    try:
        answer = parse_answer(data, 2)
    except ProtocolError:
        return
    assert answer.verdict in Verdict
    if answer.header is not None:
        assert "\r" not in answer.header and all(line[:1] in " \t" for line in answer.header.split("\n")[1:])


def test_cksums_table_with_leading_spaces_is_extra_not_header() -> None:
    # dccifd right-aligns its checksum table: every row starts with spaces. Only a TAB folds
    # the X-DCC header, so the rows are the answer's table, never header continuations.
    folded = "X-DCC-EX-Metrics: mx.example 1084; bulk\n\tBody=many Fuz1=many Fuz2=many"
    table = ("                       reported: 1          checksum  server",
             "             IP: 7f000001 00000000 00000000 00000000       0",
             "       env_From: 0c9a5e2b 1d0c9b2f 58c1b2e6 2a3b4c5d       0",
             "           Body: 8a1f0b2c 3d4e5f60 71829384 95a6b7c8    many")
    raw = "A\nA\n" + folded + "\n" + "".join(f"{row}\n" for row in table) + "\n"
    answer = parse_answer(raw.encode(), 1, ("cksums",))
    assert answer.header == folded
    assert answer.extra == table
