"""BMI verdicts from real scanners: EvalContexts built directly, spamd and rspamd on loopback."""

from __future__ import annotations

import base64
import socket

import pytest

from aclmilter import registry
from aclmilter.actions import Edits
from aclmilter.checks.bmi import VerdictKind, parse_bmi
from aclmilter.checks.scan import ScanStatus
from aclmilter.conditions.bmi import OPTIN, verdict_headers
from aclmilter.context import EvalContext
from aclmilter.errors import LookupDefer
from aclmilter.outcome import Result
from aclmilter.stages import Stage
from aclmilter.state import Recipient, Transaction
from tests import builders
from tests.harness.procs import free_port
from tests.harness.scanners import GTUBE, message

pytestmark = pytest.mark.integration

PROFILES = [
    {"name": "quarantine", "optin": "spam-to-quarantine", "when": "spam", "verdict": "alternate",
     "location": "quarantine@example.org"},
    {"name": "drop", "optin": "drop-spam", "when": "spam", "verdict": "dont_deliver"},
    {"name": "gtube", "optin": "gtube-watch", "when": "rule: GTUBE", "verdict": "alternate",
     "location": "X-GTUBE: seen"},
]
OPTINS = {"q@example.com": ("spam-to-quarantine",), "d@example.com": ("drop-spam",),
          "g@example.com": ("gtube-watch",), "p@example.com": ()}


def scanner_settings(kind: str, spamd, rspamd) -> dict:
    if kind == "spamd":
        return {"type": "spamd", "address": spamd.tcp_address, "timeout": 30}
    if kind == "spamd-unix":
        return {"type": "spamd", "address": spamd.socket_path, "timeout": 30, "command": "report"}
    return {"type": "rspamd", "address": rspamd.url, "timeout": 30}


def make_txn(body: str, recipients=OPTINS, bmi_run: bool = True) -> Transaction:
    headers, raw = message("offer", body)
    txn = Transaction(sender="alice@example.org", headers=headers, queue_id="QID9")
    txn.body.write(raw)
    txn.edits = Edits()
    for addr, optin in recipients.items():
        rcpt = Recipient(addr, (), f"<{addr}>")
        OPTIN.put(rcpt, optin)          # what `bmi_optin =` does (the bmi feature's recipient slot)
        txn.recipients.append(rcpt)
    if bmi_run:
        txn.controls["bmi_run"] = ""
    return txn


def make_ctx(bmi: dict, txn: Transaction) -> EvalContext:
    return builders.make_ctx(stage=Stage.DELIVER, settings={"bmi": parse_bmi(bmi)}, address="192.0.2.7",
                             helo="mx.example.net", txn=txn)


def at(ctx: EvalContext, address: str) -> EvalContext:
    return builders.at(ctx, Stage.DELIVER, next(r for r in ctx.txn.recipients if r.address == address))


def cond(ctx: EvalContext, name: str, arg: str) -> Result:
    item = registry.TABLES.items[name]
    return item.run(ctx, item.parse(arg))


def bmi_headers(ctx: EvalContext) -> dict[str, str]:
    verdict_headers(ctx, None)
    return {a.name: a.value for a in ctx.txn.edits.header_adds}


@pytest.mark.parametrize("kind", ["spamd", "spamd-unix", "rspamd"])
def test_gtube_gives_per_recipient_verdicts(kind, spamd, rspamd):
    ctx = make_ctx({"scanner": scanner_settings(kind, spamd, rspamd), "profiles": PROFILES},
                   make_txn(f"cheap stuff\n{GTUBE}\n"))
    kinds = {a: at(ctx, a).check("bmi_verdict").kind for a in OPTINS}
    assert kinds == {"q@example.com": VerdictKind.DELIVER_ALTERNATE, "d@example.com": VerdictKind.DONT_DELIVER,
                     "g@example.com": VerdictKind.DELIVER_ALTERNATE, "p@example.com": VerdictKind.DELIVER_DEFAULT}
    q, d, p = at(ctx, "q@example.com"), at(ctx, "d@example.com"), at(ctx, "p@example.com")
    assert cond(q, "bmi_deliver_alternate", "true") is Result.OK
    assert q.var("bmi_alt_location") == "quarantine@example.org"
    assert at(ctx, "g@example.com").var("bmi_alt_location") == "X-GTUBE: seen"
    assert cond(d, "bmi_dont_deliver", "yes") is Result.OK and d.var("bmi_deliver") == "0"
    assert cond(p, "bmi_deliver_default", "*") is Result.OK and p.var("bmi_alt_location") == ""
    assert cond(p, "bmi_rule", "5:GTUBE:11") is Result.OK
    assert cond(p, "bmi_rule", "5:8:11") is Result.FAIL
    tracker = base64.b64decode(p.var("bmi_base64_tracker_verdict")).decode()
    assert f"scanner={kind.split('-')[0]};" in tracker and "spam=yes" in tracker and "GTUBE" in tracker
    # one scan for the whole message
    assert ctx.txn.results["scan"].status is ScanStatus.SCANNED
    # four different verdicts: no header could be right for every copy
    assert bmi_headers(ctx) == {}


@pytest.mark.parametrize("kind", ["spamd", "rspamd"])
def test_clean_message_same_verdict_for_all_gets_headers(kind, spamd, rspamd):
    ctx = make_ctx({"scanner": scanner_settings(kind, spamd, rspamd), "profiles": PROFILES},
                   make_txn("Hi,\n\nthe minutes of Tuesday's meeting are on the wiki.\n\nAlice\n"))
    assert {at(ctx, a).check("bmi_verdict").kind for a in OPTINS} == {VerdictKind.DELIVER_DEFAULT}
    h = bmi_headers(ctx)
    assert base64.b64decode(h["X-Brightmail-Verdict"]).decode() == "v=1; verdict=default; profile=default"
    assert "spam=no" in base64.b64decode(h["X-Brightmail-Tracker"]).decode()
    assert not any("@" in base64.b64decode(v).decode() for v in h.values())


def test_without_bmi_run_nothing_is_scanned(spamd, rspamd):
    ctx = make_ctx({"scanner": scanner_settings("spamd", spamd, rspamd), "profiles": PROFILES},
                   make_txn(GTUBE, bmi_run=False))
    d = at(ctx, "d@example.com")
    assert cond(d, "bmi_deliver_default", "true") is Result.OK
    assert cond(d, "bmi_dont_deliver", "true") is Result.FAIL
    assert cond(d, "bmi_deliver_alternate", "true") is Result.FAIL
    assert (d.var("bmi_base64_verdict"), d.var("bmi_base64_tracker_verdict"), d.var("bmi_deliver")) == ("", "", "1")
    assert ctx.txn.results["scan"].status is ScanStatus.NOT_REQUESTED
    assert bmi_headers(ctx) == {}


def test_max_size_skips_the_scan(spamd, rspamd):
    bmi = {"scanner": {**scanner_settings("spamd", spamd, rspamd), "max_size": 100}, "profiles": PROFILES}
    ctx = make_ctx(bmi, make_txn(GTUBE + "\n" + "x" * 200))
    assert at(ctx, "d@example.com").check("bmi_verdict").kind is VerdictKind.DELIVER_DEFAULT
    assert ctx.txn.results["scan"].status is ScanStatus.SKIPPED


def _silent_port(sock: socket.socket) -> int:
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    return sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["spamd", "rspamd"])
@pytest.mark.parametrize("trouble", ["down", "timeout"])
def test_scanner_trouble_tempfails_by_default(kind, trouble):
    with socket.socket() as silent:
        port = _silent_port(silent) if trouble == "timeout" else free_port()
        address = f"127.0.0.1:{port}" if kind == "spamd" else f"http://127.0.0.1:{port}"
        ctx = make_ctx({"scanner": {"type": kind, "address": address, "timeout": 0.5}, "profiles": PROFILES},
                       make_txn(GTUBE))
        d = at(ctx, "d@example.com")
        with pytest.raises(LookupDefer):
            cond(d, "bmi_dont_deliver", "true")
        with pytest.raises(LookupDefer):
            d.var("bmi_alt_location")
        assert ctx.txn.results["scan"].status is ScanStatus.FAILED
        assert ("timeout" if trouble == "timeout" else "refused") in ctx.txn.results["scan"].reason
        assert bmi_headers(ctx) == {}


def test_scanner_down_accept_means_not_scanned():
    address = f"127.0.0.1:{free_port()}"
    ctx = make_ctx({"scanner": {"type": "spamd", "address": address}, "on_scanner_failure": "accept",
                    "profiles": PROFILES}, make_txn(GTUBE))
    d = at(ctx, "d@example.com")
    assert cond(d, "bmi_deliver_default", "true") is Result.OK
    assert cond(d, "bmi_dont_deliver", "true") is Result.FAIL
    assert d.var("bmi_base64_verdict") == "" and d.var("bmi_deliver") == "1"
    assert bmi_headers(ctx) == {}
