"""rspamd /checkv2 codec: request bytes and HTTP/JSON reply parsing, no sockets."""

import json
from pathlib import Path

import pytest

from aclmilter.checks.scan import Envelope, ScannerError
from aclmilter.clients.rspamd import encode_request, parse_response, split_http

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "bmi"


def _head(req: bytes) -> list[bytes]:
    return req.partition(b"\r\n\r\n")[0].split(b"\r\n")


def test_request_carries_the_envelope_in_headers():
    env = Envelope("192.0.2.1", "mx.example.net", "helo.example.net", "a@example.org",
                   ("b@example.com", "c@example.com"), "4ABC")
    req = encode_request(b"Subject: x\r\n\r\nhi\r\n", env, "127.0.0.1")
    head = _head(req)
    assert head[0] == b"POST /checkv2 HTTP/1.0"
    for line in (b"IP: 192.0.2.1", b"Helo: helo.example.net", b"From: a@example.org", b"Queue-Id: 4ABC",
                 b"Rcpt: b@example.com", b"Rcpt: c@example.com", b"Content-Length: 18", b"Hostname: mx.example.net"):
        assert line in head
    assert req.endswith(b"\r\n\r\nSubject: x\r\n\r\nhi\r\n")


def test_envelope_values_with_line_breaks_never_reach_the_wire():
    env = Envelope("192.0.2.1", helo="evil\r\nRcpt: x@example.net", sender="a@example.org\n",
                   recipients=("ok@example.com", "b@example.com\r\nX: y"))
    head = _head(encode_request(b"", env))
    assert not any(h.startswith((b"Helo", b"From", b"X:")) for h in head)
    assert [h for h in head if h.startswith(b"Rcpt")] == [b"Rcpt: ok@example.com"]


def test_gtube_reply():
    r = parse_response((FIX / "rspamd-gtube.bin").read_bytes())
    assert (r.backend, r.score, r.threshold, r.action, r.is_spam, r.rules) == \
        ("rspamd", 15.0, 15.0, "reject", True, ("GTUBE",))


def _reply(doc, status="200 OK", extra=b""):
    body = json.dumps(doc).encode()
    return b"HTTP/1.1 " + status.encode() + b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


def test_ham_reply_and_symbol_order_by_weight():
    r = parse_response(_reply({"score": 1.5, "required_score": 15, "action": "no action",
                               "symbols": {"A_SMALL": {"score": 0.1}, "B_BIG": {"score": -2.0},
                                           "bad name": {"score": 9}}}))
    assert (r.is_spam, r.action, r.rules) == (False, "no action", ("B_BIG", "A_SMALL"))


def test_add_header_action_counts_as_spam():
    assert parse_response(_reply({"score": 7, "required_score": 15, "action": "add header"})).is_spam


def test_chunked_reply():
    body = json.dumps({"score": 0, "required_score": 15, "action": "no action"}).encode()
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % 5 + body[:5] + b"\r\n"
            + b"%x\r\n" % (len(body) - 5) + body[5:] + b"\r\n0\r\n\r\n")
    assert split_http(data)[2] == body
    assert parse_response(data).score == 0.0


@pytest.mark.parametrize("data", [
    b"",
    _reply({"error": "bad request"}, "400 Bad Request"),
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz",
    _reply({"score": "high", "required_score": 15}),
    _reply([1, 2]),
    b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}",
    b"garbage\r\n\r\n",
])
def test_unusable_replies_are_scanner_errors(data):
    with pytest.raises(ScannerError):
        parse_response(data)


def test_server_error_text_is_kept():
    with pytest.raises(ScannerError, match="bad request"):
        parse_response(_reply({"error": "bad request"}, "400 Bad Request"))
