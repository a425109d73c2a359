"""The zone-data resolver behind the scenario `dns:` key, seen through the real DnsClient."""

from __future__ import annotations

import pytest

from aclmilter.clients.dns import DnsClient, DnsSettings, DnsTempError, Status, TempReason
from tests.harness.fake_resolver import ZoneError, ZoneResolver

ZONE = {"example.com": {"TXT": "v=spf1 " + "x" * 300, "MX": ["10 mx.example.com"]},
        "bad.example": "servfail", "slow.example": {"TXT": "timeout"}, "no.example": "refused"}


@pytest.fixture
def client() -> DnsClient:
    return DnsClient(DnsSettings(), ZoneResolver(ZONE))   # type: ignore[arg-type]


def test_found_nodata_nxdomain(client: DnsClient) -> None:
    assert client.lookup("example.com", "TXT") == ["v=spf1 " + "x" * 300]   # split at 255, joined again
    assert client.lookup("example.com", "MX") == ["10 mx.example.com"]
    assert client.query("example.com", "A").status is Status.NODATA
    assert client.query("other.example", "A").status is Status.NXDOMAIN


@pytest.mark.parametrize("name,reason", [("bad.example", TempReason.SERVFAIL), ("slow.example", TempReason.TIMEOUT),
                                         ("no.example", TempReason.REFUSED)])
def test_failures_are_temporary_errors(client: DnsClient, name: str, reason: TempReason) -> None:
    with pytest.raises(DnsTempError) as exc:
        client.lookup(name, "TXT")
    assert exc.value.reason is reason


def test_a_type_without_failure_of_a_partly_broken_name_is_nodata(client: DnsClient) -> None:
    assert client.query("slow.example", "A").status is Status.NODATA


def test_questions_are_recorded_and_records_listed() -> None:
    z = ZoneResolver(ZONE)
    DnsClient(DnsSettings(), z).lookup("Example.COM", "MX")   # type: ignore[arg-type]
    assert z.queries == [("example.com", "MX")]
    assert ("example.com", "MX", "10 mx.example.com.") in z.records() and z.failures
    assert not ZoneResolver({"a.example": {"A": "192.0.2.1"}}).failures


@pytest.mark.parametrize("bad", [{"a.example": "gone"}, {"a.example": {"A": "not-an-address"}}, {"a.example": [1]}])
def test_bad_zone_data_is_refused(bad: dict) -> None:
    with pytest.raises(ZoneError):
        ZoneResolver(bad)
