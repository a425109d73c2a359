"""PROXY-derived client identity behind Postfix's own PROXY support (issue: PROXY).

A private Postfix has a normal listener and a PROXY listener (`smtpd_upstream_proxy_protocol
= haproxy`, `milter_macro_daemon_name = proxied`). Real PROXY v1 (TCP4, TCP6) and v2 headers
are sent from loopback with documentation addresses as data; the milter's log shows what it
derived and what the policy saw, SPF is evaluated for the proxied address (a zone that passes
only 203.0.113.0/24 and 2001:db8:7::/48), and a proxy_required_hosts client that connects
directly is refused with 503 for every command but QUIT.
"""

from __future__ import annotations

import re
import smtplib
import socket
import struct
from typing import Iterator

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import Postfix, simple_message
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

POLICY = """
settings:
  dns: {{nameservers: ["{ns}"], timeout: 2}}
  proxy_listeners: [{{daemon_name: proxied, proxy_address: 203.0.113.250, proxy_port: "9999"}}]
  proxy_required_hosts: "<; 127.0.0.2 ; 2001:db8:ffff::/48"
acl:
  connect:
    - warn:
        condition: "${{if and{{ {{bool{{$proxy_session}}}} {{eq{{$proxy_host_address}}{{}}}} }} }}"
        log_message: "Failed required proxy protocol negotiation from [$sender_host_address]"
    - warn:
        logwrite: "PROXYINFO client=$sender_host_address:$sender_host_port session=$proxy_session target=$proxy_target_address:$proxy_target_port proxy=$proxy_host_address:$proxy_host_port"
    - accept
  mail:
    - warn:
        spf: "*"
        logwrite: "SPFINFO $sender_host_address $spf_result"
    - accept
"""


@pytest.fixture(scope="module")
def world(knot_dns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Postfix, Sink, AclMilterd]]:
    tmp = tmp_path_factory.mktemp("proxy")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY.format(ns=knot_dns.nameserver))
    with Sink() as sink, AclMilterd(policy, kind="unix") as milter:
        pf = Postfix(relay_port=sink.port, milter=milter.postfix_spec).start()
        try:
            yield pf, sink, milter
        finally:
            pf.stop()


def _proxy_v2_tcp4(src: str, dst: str, sport: int, dport: int) -> bytes:
    """A PROXY protocol v2 header (PROXY command, TCP over IPv4)."""
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    payload = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(payload)) + payload


class _RawPrefixSMTP(smtplib.SMTP):
    """smtplib client that writes raw bytes (a PROXY header) first, optionally from a source IP."""

    def __init__(self, prefix: bytes = b"", source: str | None = None, **kw: object) -> None:
        self._prefix = prefix
        self._source = source
        super().__init__(**kw)  # type: ignore[arg-type]

    def _get_socket(self, host, port, timeout):  # smtplib signature
        sock = socket.create_connection((host, port), timeout,
                                        source_address=(self._source, 0) if self._source else None)
        if self._prefix:
            sock.sendall(self._prefix)
        return sock


def _send(pf: Postfix, port: int, prefix: bytes = b"", source: str | None = None,
          sender: str = "alice@proxy.test", rcpt: str = "bob@example.test") -> dict:
    client = _RawPrefixSMTP(prefix, source, timeout=30)
    out: dict = {}
    try:
        out["banner"] = client.connect("127.0.0.1", port)
        out["ehlo"] = client.ehlo("client.example")
        out["mail"] = client.mail(sender)
        out["rcpt"] = client.rcpt(rcpt)
        if out["rcpt"][0] < 300:
            out["data"] = client.data(simple_message(sender, rcpt, subject="proxy test"))
        out["quit"] = client.quit()
    finally:
        client.close()
    return out


def _info(milter: AclMilterd, client: str) -> str:
    lines = milter.wait_log(rf"PROXYINFO client={re.escape(client)}:[^\n]*")
    return lines[-1]


def test_proxy_v1_tcp4_identity_and_spf(world) -> None:
    pf, sink, milter = world
    res = _send(pf, pf.proxy_port, b"PROXY TCP4 203.0.113.7 198.51.100.25 4711 25\r\n")
    assert res["data"][0] == 250, res
    line = _info(milter, "203.0.113.7")
    assert "client=203.0.113.7:4711 session=yes target=198.51.100.25:25 proxy=203.0.113.250:9999" in line
    assert milter.wait_log(r"SPFINFO 203\.0\.113\.7 pass")
    sink.wait_for_rcpt("bob@example.test")


def test_proxy_v1_tcp6_identity_and_spf(world) -> None:
    pf, _sink, milter = world
    res = _send(pf, pf.proxy_port, b"PROXY TCP6 2001:db8:7::7 2001:db8::25 4712 587\r\n")
    assert res["data"][0] == 250, res
    line = _info(milter, "2001:db8:7::7")
    assert "client=2001:db8:7::7:4712 session=yes target=2001:db8::25:587" in line
    assert milter.wait_log(r"SPFINFO 2001:db8:7::7 pass")


def test_proxy_v2_binary_header(world) -> None:
    pf, _sink, milter = world
    res = _send(pf, pf.proxy_port, _proxy_v2_tcp4("203.0.113.8", "198.51.100.26", 4713, 25))
    assert res["data"][0] == 250, res
    line = _info(milter, "203.0.113.8")
    assert "session=yes target=198.51.100.26:25" in line
    assert milter.wait_log(r"SPFINFO 203\.0\.113\.8 pass")


def test_direct_client_is_not_proxied_and_spf_sees_loopback(world) -> None:
    pf, _sink, milter = world
    res = _send(pf, pf.port)
    assert res["data"][0] == 250, res
    line = _info(milter, "127.0.0.1")
    assert "session=no target=: proxy=:" in line
    assert milter.wait_log(r"SPFINFO 127\.0\.0\.1 fail")


def test_required_host_directly_gets_503_but_quit_works(world) -> None:
    pf, _sink, milter = world
    client = _RawPrefixSMTP(b"", "127.0.0.2", timeout=30)
    try:
        assert client.connect("127.0.0.1", pf.port)[0] == 220
        # Postfix applies a milter's HELO refusal (other than 421) at the next MAIL/VRFY/ETRN,
        # so EHLO itself still gets 250 here; every command Postfix passes on gets 503.
        client.ehlo("client.example")
        code, text = client.mail("alice@proxy.test")
        assert code == 503 and text == b"5.7.0 Command refused, required Proxy negotiation failed"
        code, text = client.verify("bob@example.test")
        assert code == 503 and b"required Proxy negotiation failed" in text
        code, text = client.mail("alice@proxy.test")
        assert code == 503
        assert client.quit()[0] == 221
    finally:
        client.close()
    assert milter.wait_log(r"Failed required proxy protocol negotiation from \[127\.0\.0\.2\]")


def test_required_host_through_proxy_listener_is_accepted(world) -> None:
    pf, _sink, milter = world
    res = _send(pf, pf.proxy_port, b"PROXY TCP4 127.0.0.2 198.51.100.25 4714 25\r\n")
    assert res["ehlo"][0] == 250 and res["data"][0] == 250, res
