# SPDX-License-Identifier: GPL-3.0-or-later
"""DCC end to end: Postfix -> aclmilter serve -> fake dccifd, delivered to the sink."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.fake_dccifd import Behaviour, FakeDccifd, header_of_size
from tests.harness.postfix import postfix_instance, simple_message, world_traversable_dir
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

POLICY = """
settings:
  primary_hostname: mx.test.example
  dccifd_address: {address}
  dccifd_timeout: 20
  dcc_direct_add_header: true
acl:
  data:
    # tolerant@: DCC outages pass (defer_ok), only a greylist embargo defers
    - accept:
        senders: tolerant@example.org
        dcc: "*/defer_ok"
    - defer:
        senders: tolerant@example.org
        condition: "${{if eq{{$dcc_result}}{{G}}{{yes}}{{no}}}}"
        message: "451 4.7.1 Greylisted by DCC"
    - accept:
        senders: tolerant@example.org
    # everybody else: the seed's `defer !dcc = *`
    - defer:
        "!dcc": "*"
        message: "451 4.7.1 Greylisted by DCC"
    - accept
  deliver:
    - discard:
        dcc_rcpt: R
    - accept
"""


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[object, Sink, Path]]:
    """Sink, Postfix and aclmilter for the module; the fake dccifd is per test (same path)."""
    work = world_traversable_dir("dcc-e2e-")
    sock = work / "dccifd"
    policy = work / "dcc.yaml"
    policy.write_text(POLICY.format(address=sock))
    with Sink() as sink, AclMilterd(policy, workdir=work) as milter:
        with postfix_instance(sink.port, milter=milter.postfix_spec) as pf:
            yield pf, sink, sock


@pytest.fixture
def fake(world: tuple[object, Sink, Path]) -> Iterator[FakeDccifd]:
    _, sink, sock = world
    sink.clear()
    with FakeDccifd.unix(sock) as server:
        yield server


def send(world: tuple, sender: str, rcpts: list[str]):  # SendResult
    pf = world[0]
    return pf.send(sender, rcpts, simple_message(sender, rcpts[0], subject="dcc e2e"))


def test_greylist_g_is_a_4xx(world: tuple, fake: FakeDccifd) -> None:
    fake.default = Behaviour("G")
    r = send(world, "alice@example.org", ["bob@example.test"])
    assert r.data is not None and r.data[0] == 451 and "Greylisted by DCC" in r.data[1]
    [req] = fake.requests
    assert req.client == "127.0.0.1" and req.sender == "alice@example.org"
    assert req.recipients == [("bob@example.test", "")] and req.helo == "client.example.org"


def test_accept_delivers_with_the_folded_x_dcc_header(world: tuple, fake: FakeDccifd) -> None:
    header = header_of_size(240)
    fake.default = Behaviour("A", header=header)
    r = send(world, "alice@example.org", ["bob@example.test"])
    assert r.accepted, r
    [got] = world[1].wait_for(1)
    assert header.replace("\n", "\r\n").encode() in got.data


def test_r_for_some_recipients_drops_only_those(world: tuple, fake: FakeDccifd) -> None:
    fake.default = Behaviour("A", rcpts="RA")
    r = send(world, "alice@example.org", ["spam@example.test", "ham@example.test"])
    assert r.accepted, r
    [got] = world[1].wait_for(1)
    assert got.rcpt_tos == ("ham@example.test",)


def test_overall_r_defers_under_defer_not_dcc(world: tuple, fake: FakeDccifd) -> None:
    fake.default = Behaviour("R")
    r = send(world, "alice@example.org", ["bob@example.test"])
    assert r.data is not None and r.data[0] == 451


@pytest.mark.parametrize("sender,code", [("alice@example.org", 451), ("tolerant@example.org", 250)])
def test_t_without_and_with_defer_ok(world: tuple, fake: FakeDccifd, sender: str, code: int) -> None:
    fake.default = Behaviour("T")
    r = send(world, sender, ["bob@example.test"])
    assert r.data is not None and r.data[0] == code, r
    if code == 250:
        [got] = world[1].wait_for(1)
        # As in Exim, the header dccifd sent with its T is still added (it holds its counts).
        assert b"\r\nX-DCC-FAKE-Metrics: mx.fake.example 1234;" in got.data


@pytest.mark.parametrize("sender,code", [("alice@example.org", 451), ("tolerant@example.org", 250)])
def test_dccifd_down(world: tuple, sender: str, code: int) -> None:
    """No dccifd listening: the message tempfails (the client keeps it) unless defer_ok."""
    world[1].clear()
    r = send(world, sender, ["bob@example.test"])
    assert r.data is not None and r.data[0] == code, r
    if code == 451:
        assert world[1].count == 0
