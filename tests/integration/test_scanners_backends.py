"""Both scanner backends against real servers on loopback: spamd (TCP and unix) and rspamd."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from aclmilter.checks.scan import Endpoint, Envelope, ScannerError, assemble_message
from aclmilter.clients.rspamd import RspamdScanner
from aclmilter.clients.spamd import SpamdScanner
from tests.harness.procs import free_port
from tests.harness.scanners import GTUBE, message

pytestmark = pytest.mark.integration

ENV = Envelope("192.0.2.7", "mx.example.net", "mx.example.net", "alice@example.org",
               ("bob@example.com", "carol@example.com"), "QID42")


def _msg(body: str) -> bytes:
    headers, raw = message("hello", body)
    return assemble_message(headers, raw)


SPAM_MSG = _msg(f"Buy now.\n{GTUBE}\n")
CLEAN_MSG = _msg("Hi Bob,\n\nthe meeting notes are attached to the wiki page.\n\nAlice\n")


def test_spamd_tcp_gtube_symbols(spamd):
    r = SpamdScanner(Endpoint(host=spamd.host, port=spamd.port), 30).scan(SPAM_MSG, ENV)
    assert r.backend == "spamd" and r.is_spam and r.threshold == 5.0 and r.score >= 1000
    assert "GTUBE" in r.rules


def test_spamd_unix_socket_clean_message(spamd):
    r = SpamdScanner(Endpoint(path=spamd.socket_path), 30).scan(CLEAN_MSG, ENV)
    assert not r.is_spam and r.score < r.threshold == 5.0
    assert "GTUBE" not in r.rules


def test_spamd_report_gives_rule_points(spamd):
    r = SpamdScanner(Endpoint(host=spamd.host, port=spamd.port), 30, "report").scan(SPAM_MSG, ENV)
    assert dict(r.rule_scores)["GTUBE"] == 1000.0 and "GTUBE" in r.rules


def test_rspamd_gtube(rspamd):
    r = RspamdScanner(Endpoint(host=rspamd.host, port=rspamd.port), 30).scan(SPAM_MSG, ENV)
    assert (r.backend, r.action, r.is_spam) == ("rspamd", "reject", True)
    assert "GTUBE" in r.rules


def test_rspamd_clean_message(rspamd):
    r = RspamdScanner(Endpoint(host=rspamd.host, port=rspamd.port), 30).scan(CLEAN_MSG, ENV)
    assert not r.is_spam and r.score < r.threshold
    assert r.action in ("no action", "greylist")
    assert "GTUBE" not in r.rules


def _closed_port() -> int:
    return free_port()


@pytest.mark.parametrize("make", [
    lambda port: SpamdScanner(Endpoint(host="127.0.0.1", port=port), 5),
    lambda port: RspamdScanner(Endpoint(host="127.0.0.1", port=port), 5),
])
def test_scanner_down_is_a_scanner_error(make):
    with pytest.raises(ScannerError, match="refused"):
        make(_closed_port()).scan(CLEAN_MSG, ENV)


def test_missing_unix_socket_is_a_scanner_error(tmp_path: Path):
    with pytest.raises(ScannerError):
        SpamdScanner(Endpoint(path=str(tmp_path / "none.sock")), 5).scan(CLEAN_MSG, ENV)


@pytest.mark.parametrize("make", [
    lambda port: SpamdScanner(Endpoint(host="127.0.0.1", port=port), 0.3),
    lambda port: RspamdScanner(Endpoint(host="127.0.0.1", port=port), 0.3),
])
def test_a_scanner_that_never_answers_times_out(make):
    # A listening socket nobody accepts from: connect succeeds (backlog), no reply ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        with pytest.raises(ScannerError, match="timeout"):
            make(silent.getsockname()[1]).scan(CLEAN_MSG, ENV)
