"""spamd SPAMC/1.5 codec: request bytes and reply parsing, no sockets."""

from pathlib import Path

import pytest

from aclmilter.checks.scan import ScannerError
from aclmilter.clients.spamd import encode_request, parse_response

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "bmi"


def test_request_has_command_length_user_and_message():
    req = encode_request("symbols", b"Subject: x\r\n\r\nhi\r\n", "nobody")
    head, _, body = req.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [b"SYMBOLS SPAMC/1.5", b"Content-length: 18", b"User: nobody"]
    assert body == b"Subject: x\r\n\r\nhi\r\n"


@pytest.mark.parametrize("user", ["a\r\nb", "two words", ""])
def test_request_refuses_a_user_that_would_break_the_protocol(user):
    with pytest.raises(ValueError):
        encode_request("SYMBOLS", b"x", user)


def test_request_refuses_unknown_command():
    with pytest.raises(ValueError):
        encode_request("PROCESS", b"x")


def test_symbols_reply_gives_score_threshold_and_rules():
    r = parse_response((FIX / "spamd-symbols-gtube.bin").read_bytes(), "SYMBOLS")
    assert (r.backend, r.score, r.threshold, r.is_spam) == ("spamd", 1004.2, 5.0, True)
    assert r.rules[0] == "GTUBE" and "MISSING_DATE" in r.rules and len(r.rules) == 8


def test_report_reply_gives_rules_with_points():
    r = parse_response((FIX / "spamd-report-gtube.bin").read_bytes(), "REPORT")
    assert dict(r.rule_scores)["GTUBE"] == 1000.0
    assert dict(r.rule_scores)["MISSING_DATE"] == 2.7
    assert set(r.rules) == set(parse_response((FIX / "spamd-symbols-gtube.bin").read_bytes()).rules)


def test_ham_reply():
    r = parse_response(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; -0.1 / 5.0\r\n\r\n")
    assert (r.is_spam, r.score, r.rules) == (False, -0.1, ())


@pytest.mark.parametrize("data", [
    b"",
    b"SPAMD/1.1 76 Bad header line: (EOF)\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n",
    b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n",
    b"SPAMD/1.1 0 EX_OK\r\nSpam: maybe ; x / 5\r\n\r\n",
])
def test_unusable_replies_are_scanner_errors(data):
    with pytest.raises(ScannerError):
        parse_response(data)


def test_odd_rule_names_are_dropped():
    r = parse_response(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6 / 5\r\n\r\nGOOD_ONE,bad name,X\r\nY")
    assert r.rules == ("GOOD_ONE",)
