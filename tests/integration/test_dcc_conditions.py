# SPDX-License-Identifier: GPL-3.0-or-later
"""`dcc`, `dcc_rcpt`, the DCC variables and the X-DCC hook, against the fake dccifd.

Contexts are built directly (no engine): the registry entries are called the way the engine
calls them, and the fake records the exact bytes aclmilter sent.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from aclmilter import conditions  # noqa: F401  (registers every feature)
from aclmilter import registry
from aclmilter.actions import Decision, HeaderAdd
from aclmilter.context import EvalContext
from aclmilter.errors import LookupDefer
from aclmilter.outcome import Result
from aclmilter.stages import Stage
from aclmilter.state import Recipient
from tests import builders
from tests.harness.fake_dccifd import Behaviour, FakeDccifd, header_of_size

pytestmark = pytest.mark.integration

DCC = registry.TABLES.items["dcc"]
DCC_RCPT = registry.TABLES.items["dcc_rcpt"]
HEADERS = [("Received", "from mx.sender.example (mx.sender.example [192.0.2.25])\n\tby mx.ours.example"),
           ("From", "alice@sender.example"), ("Subject", "hello")]
BODY = b"body line 1\r\nbody line 2\r\n"


@pytest.fixture
def fake() -> Iterator[FakeDccifd]:
    with tempfile.TemporaryDirectory(prefix="dcc") as d:
        with FakeDccifd.unix(Path(d) / "dccifd") as server:
            yield server


def settings_for(address: str, **given: Any) -> dict:
    """Settings as the loader builds them: every default, then `given` through its parser."""
    out = {name: s.default for name, s in registry.TABLES.settings.items()}
    raw = {"dccifd_address": address, "dccifd_timeout": 20, **given}
    for name, value in raw.items():
        out[name] = registry.TABLES.settings[name].parse(value)
    return out


def make_ctx(address: str, *, ip: str = "192.0.2.25", name: str = "mx.sender.example",
             helo: str = "mx.sender.example", sender: str = "alice@sender.example",
             rcpts: tuple[str, ...] = ("bob@ours.example", "carol@ours.example"),
             acl_m: dict[str, str] | None = None, **settings: Any) -> EvalContext:
    return builders.make_ctx(stage=Stage.DATA, settings=settings_for(address, **settings), address=ip, name=name,
                             helo=helo, sender=sender, recipients=[Recipient(r, raw=f"<{r}>") for r in rcpts],
                             headers=list(HEADERS), acl_m=acl_m, body=BODY, edits=True)


def deliver_ctx(ctx: EvalContext, rcpt: Recipient) -> EvalContext:
    return builders.at(ctx, Stage.DELIVER, rcpt)


def dcc(ctx: EvalContext, arg: str = "*") -> Result:
    return DCC.run(ctx, DCC.parse(arg))


MESSAGE = (b"Received: from mx.sender.example (mx.sender.example [192.0.2.25])\r\n\tby mx.ours.example\r\n"
           b"From: alice@sender.example\r\nSubject: hello\r\n\r\n" + BODY)


# ---- request bytes -------------------------------------------------------------------------
def test_request_bytes_exactly(fake: FakeDccifd) -> None:
    ctx = make_ctx(fake.address)
    assert dcc(ctx) is Result.OK
    assert fake.requests[0].raw == (
        b"header\n192.0.2.25\rmx.sender.example\nmx.sender.example\nalice@sender.example\n"
        b"bob@ours.example\ncarol@ours.example\n\n" + MESSAGE)


def test_ipv6_client_null_sender_and_users(fake: FakeDccifd) -> None:
    ctx = make_ctx(fake.address, ip="2001:db8:0:0::25", name="v6.sender.example", sender="",
                   dccifd_recipient_user="local_part", dccifd_options="header grey-off")
    assert dcc(ctx) is Result.OK
    assert fake.requests[0].raw == (
        b"header grey-off\n2001:db8::25\rv6.sender.example\nmx.sender.example\n<>\n"
        b"bob@ours.example\rbob\ncarol@ours.example\rcarol\n\n" + MESSAGE)


def test_unknown_client_and_ipv4_mapped_address(fake: FakeDccifd) -> None:
    assert dcc(make_ctx(fake.address, ip="", name="unknown")) is Result.OK
    assert dcc(make_ctx(fake.address, ip="::ffff:192.0.2.7", name="")) is Result.OK
    assert [r.raw.split(b"\n")[1] for r in fake.requests] == [b"", b"192.0.2.7"]


def test_override_client_ip_replaces_the_address_and_drops_the_name(fake: FakeDccifd) -> None:
    ctx = make_ctx(fake.address, acl_m={"acl_m_dcc_override_client_ip": "212.227.15.16"})
    assert dcc(ctx) is Result.OK
    assert fake.requests[0].raw.split(b"\n")[1] == b"212.227.15.16"
    assert ctx.result("dcc").client_ip == "212.227.15.16"


def test_override_that_is_not_an_ip_is_ignored_and_logged(fake: FakeDccifd) -> None:
    ctx = make_ctx(fake.address, acl_m={"acl_m_dcc_override_client_ip": "1.2.3.4\rforged"})
    assert dcc(ctx) is Result.OK
    assert fake.requests[0].raw.split(b"\n")[1] == b"192.0.2.25\rmx.sender.example"
    assert any("not an IP address" in line for line in ctx.log_lines)


@pytest.mark.parametrize("where", ["helo", "sender", "rcpt"])
def test_line_breaks_in_the_envelope_are_refused_without_asking(fake: FakeDccifd, where: str) -> None:
    evil = "x@y.example\r\nforged@z.example"
    kwargs: dict[str, Any] = {"helo": evil} if where == "helo" else \
        {"sender": evil} if where == "sender" else {"rcpts": (evil,)}
    ctx = make_ctx(fake.address, **kwargs)
    with pytest.raises(LookupDefer):
        dcc(ctx)
    assert dcc(ctx, "*/defer_ok") is Result.FAIL
    assert fake.connections == 0
    assert ctx.var("dcc_result") == "T"


# ---- verdicts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("letter,expected", [("A", Result.OK), ("S", Result.OK),
                                             ("R", Result.FAIL), ("G", Result.FAIL)])
def test_every_answer_letter(fake: FakeDccifd, letter: str, expected: Result) -> None:
    fake.default = Behaviour(letter)
    ctx = make_ctx(fake.address)
    assert dcc(ctx) is expected
    assert dcc(ctx, "*/defer_ok") is expected
    assert ctx.var("dcc_result") == letter
    assert ctx.var("dcc_header").startswith("X-DCC-FAKE-Metrics: mx.fake.example 1234;")
    assert fake.connections == 1   # every dcc condition of the message shares one call


def test_negation_leaves_defer_alone_and_flips_fail(fake: FakeDccifd) -> None:
    """`defer !dcc = *`: G -> FAIL -> negated OK -> the defer verb fires (the engine negates)."""
    fake.default = Behaviour("G")
    assert dcc(make_ctx(fake.address)).negated() is Result.OK
    assert Result.DEFER.negated() is Result.DEFER


def test_t_defers_and_defer_ok_makes_it_false(fake: FakeDccifd) -> None:
    fake.default = Behaviour("T")
    ctx = make_ctx(fake.address)
    with pytest.raises(LookupDefer, match="answered T"):
        dcc(ctx)
    assert dcc(ctx, "*/defer_ok") is Result.FAIL
    assert ctx.var("dcc_result") == "T"
    assert fake.connections == 1


@pytest.mark.parametrize("arg", ["false", "0", "", "FALSE/defer_ok", " 0 "])
def test_disabled_first_option_is_false_without_a_call(fake: FakeDccifd, arg: str) -> None:
    ctx = make_ctx(fake.address)
    assert dcc(ctx, arg) is Result.FAIL
    assert fake.connections == 0 and ctx.var("dcc_result") == ""


@pytest.mark.parametrize("behaviour", [
    Behaviour(mode="close"),
    Behaviour(mode="garbage", raw=b"550 go away\r\n"),
    Behaviour(mode="raw", raw=b"A\nAA\nX-DCC-x-Metrics: a\nInjected: header\n\n"),
    Behaviour(mode="raw", raw=b"A\nA\nX-DCC-x-Metrics: a\n\n"),       # one letter, two recipients
    Behaviour(mode="early_t"),
    Behaviour(mode="slow", delay=60),
], ids=["early-close", "garbage", "injected-header", "short-rcpt-line", "early-T", "slow"])
def test_failures_are_temporary(fake: FakeDccifd, behaviour: Behaviour) -> None:
    fake.default = behaviour
    ctx = make_ctx(fake.address, dccifd_timeout=0.5 if behaviour.mode == "slow" else 20)
    with pytest.raises(LookupDefer):
        dcc(ctx)
    assert dcc(ctx, "*/defer_ok") is Result.FAIL
    assert ctx.var("dcc_result") == "T" and ctx.var("dcc_header") == ""
    assert fake.connections == 1     # the failure is memoised: the message is not re-reported
    assert any(line.startswith("dcc: ") for line in ctx.log_lines)


def test_dccifd_down_is_temporary(tmp_path: Path) -> None:
    ctx = make_ctx(str(tmp_path / "no-such-socket"))
    with pytest.raises(LookupDefer, match="cannot connect"):
        dcc(ctx)
    assert dcc(ctx, "*/defer_ok") is Result.FAIL


def test_tcp_ipv4_and_ipv6_addresses() -> None:
    for host in ("127.0.0.1", "::1"):
        with FakeDccifd.tcp(host) as server:
            server.default = Behaviour("R")
            assert dcc(make_ctx(server.address)) is Result.FAIL
            assert server.requests[0].raw.startswith(b"header\n192.0.2.25\r")


# ---- per-recipient results (DELIVER) ---------------------------------------------------------
def test_per_recipient_letters_and_dcc_rcpt(fake: FakeDccifd) -> None:
    fake.default = Behaviour("A", rcpts="RAG")
    ctx = make_ctx(fake.address, rcpts=("r@ours.example", "a@ours.example", "g@ours.example"))
    assert dcc(ctx) is Result.OK
    seen = {}
    for rcpt in ctx.txn.recipients:
        dctx = deliver_ctx(ctx, rcpt)
        seen[rcpt.address] = (dctx.var("dcc_rcpt_result"), DCC_RCPT.run(dctx, DCC_RCPT.parse("R")),
                              DCC_RCPT.run(dctx, DCC_RCPT.parse("R : G")))
    assert seen == {"r@ours.example": ("R", Result.OK, Result.OK),
                    "a@ours.example": ("A", Result.FAIL, Result.FAIL),
                    "g@ours.example": ("G", Result.FAIL, Result.OK)}
    assert fake.connections == 1


def test_dcc_rcpt_asks_dccifd_itself_when_data_did_not(fake: FakeDccifd) -> None:
    fake.default = Behaviour("R", rcpts="RA")
    ctx = make_ctx(fake.address)
    first, second = ctx.txn.recipients
    assert DCC_RCPT.run(deliver_ctx(ctx, first), DCC_RCPT.parse("R")) is Result.OK
    assert DCC_RCPT.run(deliver_ctx(ctx, second), DCC_RCPT.parse("R")) is Result.FAIL
    assert fake.connections == 1


def test_t_and_failures_give_every_recipient_t(fake: FakeDccifd) -> None:
    fake.default = Behaviour("T")        # dccifd's all-R line on T is not a spam verdict
    ctx = make_ctx(fake.address)
    for rcpt in ctx.txn.recipients:
        dctx = deliver_ctx(ctx, rcpt)
        assert DCC_RCPT.run(dctx, DCC_RCPT.parse("R")) is Result.FAIL
        assert DCC_RCPT.run(dctx, DCC_RCPT.parse("T")) is Result.OK
        assert dctx.var("dcc_rcpt_result") == "T"


def test_recipients_discarded_at_rcpt_are_not_sent(fake: FakeDccifd) -> None:
    fake.default = Behaviour("A", rcpts="R")
    ctx = make_ctx(fake.address)
    ctx.txn.recipients[0].discarded = True
    assert dcc(ctx) is Result.OK
    assert fake.requests[0].recipients == [("carol@ours.example", "")]
    assert deliver_ctx(ctx, ctx.txn.recipients[0]).var("dcc_rcpt_result") == ""
    assert deliver_ctx(ctx, ctx.txn.recipients[1]).var("dcc_rcpt_result") == "R"


# ---- headers ----------------------------------------------------------------------------------
HOOK = registry.TABLES.eom_hooks["dcc_header"]
ACCEPTED = Decision(Result.OK)


def test_folded_240_byte_header_is_the_whole_variable_and_added_whole(fake: FakeDccifd) -> None:
    header = header_of_size(240)
    fake.default = Behaviour("A", header=header)
    ctx = make_ctx(fake.address, dcc_direct_add_header=True)
    assert dcc(ctx) is Result.OK
    assert ctx.var("dcc_header") == header
    HOOK.run(ctx, ACCEPTED)
    name, _, value = header.partition(": ")
    assert ctx.txn.edits.header_adds == [HeaderAdd(name, value, source="dcc_direct_add_header")]
    assert (HOOK.phase, HOOK.order) == ("after_data", 40)


def test_no_header_without_the_setting_or_the_call_or_on_reject(fake: FakeDccifd) -> None:
    ctx = make_ctx(fake.address)
    assert dcc(ctx) is Result.OK
    HOOK.run(ctx, ACCEPTED)
    assert ctx.txn.edits.header_adds == []
    ctx = make_ctx(fake.address, dcc_direct_add_header=True)
    HOOK.run(ctx, ACCEPTED)                          # dcc never ran
    assert ctx.txn.edits.header_adds == [] and fake.connections == 1
    assert dcc(ctx) is Result.OK
    HOOK.run(ctx, Decision(Result.FAIL))             # the message is refused anyway
    assert ctx.txn.edits.header_adds == []


def test_extra_header_lines_from_acl_m_dcc_add_header(fake: FakeDccifd) -> None:
    ctx = make_ctx(fake.address, dcc_direct_add_header=True,
                   acl_m={"acl_m_dcc_add_header": "X-Clam: clean\nX-Folded: a\n\tb\n"})
    assert dcc(ctx) is Result.OK
    HOOK.run(ctx, ACCEPTED)
    assert [(a.name, a.value) for a in ctx.txn.edits.header_adds][1:] == [("X-Clam", "clean"), ("X-Folded", "a\n\tb")]


@pytest.mark.parametrize("extra", ["X-A: b\rX-Evil: c", "X-A: b\0", "not a header line", "X-A: b\nnot a header",
                                   "Bad Name: x"])
def test_malformed_extra_header_text_is_refused_whole(fake: FakeDccifd, extra: str) -> None:
    ctx = make_ctx(fake.address, dcc_direct_add_header=True, acl_m={"acl_m_dcc_add_header": extra})
    assert dcc(ctx) is Result.OK
    HOOK.run(ctx, ACCEPTED)
    assert [a.name for a in ctx.txn.edits.header_adds] == ["X-DCC-FAKE-Metrics"]
    assert any("acl_m_dcc_add_header not added" in line for line in ctx.log_lines)


def test_failure_adds_no_header_but_extra_lines_still_go(fake: FakeDccifd) -> None:
    fake.default = Behaviour(mode="close")
    ctx = make_ctx(fake.address, dcc_direct_add_header=True, acl_m={"acl_m_dcc_add_header": "X-Clam: clean"})
    assert dcc(ctx, "*/defer_ok") is Result.FAIL
    HOOK.run(ctx, ACCEPTED)
    assert [(a.name, a.value) for a in ctx.txn.edits.header_adds] == [("X-Clam", "clean")]
