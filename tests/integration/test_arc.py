# SPDX-License-Identifier: GPL-3.0-or-later
"""ARC with real sealed messages (dkimpy arc_sign here, keys in the Knot zone arcx.).

A message DKIM-signed by pass.dmarcx (p=reject) goes through a simulated mailing list
(list.arcx) that records its own authentication results, tags the Subject and appends a
footer (which breaks the author's DKIM signature), seals it, and sends it from its own
address and IP. DMARC then fails; it is overridden only when list.arcx is a trusted sealer
and the chain is intact. Broken chains (a tampered ARC-Message-Signature, a missing
instance, a seal saying cv=fail) never override.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import authres
import dkim
import pytest

from aclmilter.actions import Decision
from aclmilter.checks.arc import ArcStatus
from aclmilter.checks.authresults import authresults_hook
from aclmilter.checks.dmarc import DmarcStatus
from aclmilter.checks.dmarc_history import history_hook
from aclmilter.conditions.arc import _arc_sign_hook
from aclmilter.outcome import Result
from tests.fixtures.dmarc.ctxhelp import KEY_SEL1, KEY_THIRD, make_ctx, message, settings_for, sign
from tests.harness.procs import require_binary
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

ACCEPT = Decision(Result.OK)
LIST_IP = "192.0.2.50"


def _add_ar(raw: bytes, text: str) -> bytes:
    return f"Authentication-Results: {text}\r\n".encode() + raw


def _seal(raw: bytes, domain: str, key: bytes) -> bytes:
    include = [b"from", b"to", b"subject", b"message-id"]
    arc_set = dkim.arc_sign(raw, b"sel1", domain.encode(), key, domain.encode(), include_headers=include)
    assert arc_set, "dkimpy refused to seal"
    return b"".join(arc_set) + raw


def through_list(raw: bytes) -> bytes:
    """What list.arcx does: note its results, change the message, seal it."""
    noted = _add_ar(raw, "list.arcx; arc=none smtp.remote-ip=192.0.2.1; dkim=pass header.d=pass.dmarcx "
                         "header.s=sel1; spf=pass smtp.mailfrom=pass.dmarcx; dmarc=pass header.from=pass.dmarcx")
    changed = noted.replace(b"Subject: hello", b"Subject: [list] hello") + b"-- \r\nlist footer\r\n"
    return _seal(changed, "list.arcx", KEY_SEL1)


def through_forwarder(raw: bytes, cv: str = "pass") -> bytes:
    """A second hop (fwd.arcx) that verified the chain as `cv` and seals again."""
    noted = _add_ar(raw, f"fwd.arcx; arc={cv} smtp.remote-ip={LIST_IP}; dkim=fail header.d=pass.dmarcx")
    return _seal(noted, "fwd.arcx", KEY_THIRD)


def _ctx(knot, raw: bytes, **settings):
    return make_ctx(raw, settings=settings_for(knot.settings(), **settings), sender="list-bounces@list.arcx",
                    client=LIST_IP, helo="list.arcx", clock=time.time)


@pytest.fixture(scope="module")
def listed() -> bytes:
    return through_list(sign(message()))


def test_list_breaks_dkim_and_dmarc_fails_without_a_trusted_sealer(knot_dns, listed: bytes) -> None:
    ctx = _ctx(knot_dns, listed)
    res = ctx.check("dmarc")
    assert res.status is DmarcStatus.REJECT and res.override == ""
    assert ctx.check("dkim").signatures[0].status.value == "fail"       # the list broke it
    arc = ctx.check("arc")
    assert arc.status is ArcStatus.PASS and arc.domains == ("list.arcx",) and arc.oldest_pass == 1
    assert (ctx.var("arc_status"), ctx.var("arc_domains"), ctx.var("arc_oldest_pass")) == ("pass", "list.arcx", "1")
    # a trusted sealer that is not in this chain changes nothing
    other = _ctx(knot_dns, listed, arc_trusted_sealers=["fwd.arcx"]).check("dmarc")
    assert other.status is DmarcStatus.REJECT and other.override == ""


def test_trusted_sealer_overrides_and_says_so_everywhere(knot_dns, listed: bytes, tmp_path: Path) -> None:
    hist = tmp_path / "history"
    ctx = _ctx(knot_dns, listed, arc_trusted_sealers="list.arcx", dmarc_history_file=str(hist))
    res = ctx.check("dmarc")
    assert res.status is DmarcStatus.NONE and res.result == "fail" and res.override == "trusted_forwarder"
    assert ctx.var("dmarc_status") == "none"
    authresults_hook(ctx, ACCEPT)
    ours = [a for a in ctx.txn.edits.header_adds if a.name == "Authentication-Results"][0].value
    parsed = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {ours}")
    assert {r.method: r.result for r in parsed.results}["arc"] == "pass"
    assert "header.oldest-pass=1" in ours and f"smtp.remote-ip={LIST_IP}" in ours
    assert "dmarc=fail (p=reject dis=none override=trusted_forwarder)" in ours
    history_hook(ctx, ACCEPT)
    lines = hist.read_text().split("\n")
    assert "arc 0" in lines and "policy 16" in lines and "action 2" in lines
    assert 'arc_policy 0 json:[{ "i": 1, "d":"list.arcx", "s":"sel1", "ip":"192.0.2.1" }]' in lines


def test_two_hops_trust_is_per_sealer(knot_dns, listed: bytes) -> None:
    two = through_forwarder(listed)
    ctx = _ctx(knot_dns, two, arc_trusted_sealers=["fwd.arcx"])
    arc = ctx.check("arc")
    assert arc.status is ArcStatus.PASS and arc.domains == ("list.arcx", "fwd.arcx")
    assert ctx.check("dmarc").status is DmarcStatus.REJECT     # fwd.arcx itself saw DKIM fail
    ctx = _ctx(knot_dns, two, arc_trusted_sealers=["list.arcx"])
    assert ctx.check("dmarc").override == "trusted_forwarder"   # list.arcx's instance 1 vouches


def _drop_instance(raw: bytes, instance: int) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    fields = re.split(rb"\r\n(?![ \t])", head)
    kept = [f for f in fields if not (f.lower().startswith(b"arc-")
                                      and re.search(rb"\bi=%d;" % instance, f))]
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


def _tamper_ams(raw: bytes) -> bytes:
    return re.sub(rb"(ARC-Message-Signature: i=1;[^\r]*?a=rsa-sha256)", rb"\1 ", raw, count=1).replace(
        b"h=from : to : subject : message-id", b"h=from : subject : message-id", 1)


@pytest.mark.parametrize("breakage", ["tampered_ams", "missing_instance", "cv_fail"])
def test_broken_chains_give_fail_and_no_override(knot_dns, listed: bytes, breakage: str) -> None:
    if breakage == "tampered_ams":
        raw = _tamper_ams(listed)
        assert raw != listed
    elif breakage == "missing_instance":
        raw = _drop_instance(through_forwarder(listed), 1)
    else:
        raw = through_forwarder(listed, cv="fail")
    ctx = _ctx(knot_dns, raw, arc_trusted_sealers=["list.arcx", "fwd.arcx"])
    assert ctx.check("arc").status is ArcStatus.FAIL, ctx.check("arc").reason
    assert ctx.var("arc_status") == "fail" and ctx.var("arc_oldest_pass") == "0"
    res = ctx.check("dmarc")
    assert res.status is DmarcStatus.REJECT and res.override == ""


def test_arc_key_timeout_is_temperror(silent_dns, listed: bytes) -> None:
    ctx = make_ctx(listed, settings=settings_for(silent_dns.settings(timeout=0.5, lifetime=1)),
                   sender="list-bounces@list.arcx", client=LIST_IP)
    assert ctx.check("arc").status is ArcStatus.TEMPERROR


def test_we_seal_our_verdict_for_the_next_hop(knot_dns, listed: bytes, tmp_path: Path) -> None:
    key = tmp_path / "arc.key"
    key.write_bytes(KEY_SEL1)
    from aclmilter.conditions.arc import _sign_settings
    signer = _sign_settings({"domain": "mx.arcx", "selector": "sel1", "key_file": str(key)})
    ctx = _ctx(knot_dns, listed, arc_sign=signer, authserv_id="mx.arcx")
    ctx.check("dmarc")
    authresults_hook(ctx, ACCEPT)
    _arc_sign_hook(ctx, ACCEPT)
    adds = ctx.txn.edits.header_adds
    names = [a.name for a in adds]
    assert names == ["Authentication-Results", "ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results"]
    seal = adds[1].value
    assert "i=2" in seal and "cv=pass" in seal and "d=mx.arcx" in seal
    # The next hop sees the message as we pass it on: our headers on top of what we received.
    ar = f"Authentication-Results: {adds[0].value}\r\n".encode()
    ours = b"".join(f"{a.name}: {a.value}".replace("\n", "\r\n").encode() + b"\r\n" for a in adds[1:])
    onward = ours + ar + listed
    dns = ctx.services.get("dns")

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        found = dns.lookup(name.decode().rstrip("."), "TXT")
        return found[0].encode() if found else None

    cv, results, reason = dkim.arc_verify(onward, dnsfunc=txt)
    assert cv == dkim.CV_Pass, reason
    assert {r["instance"] for r in results} == {1, 2}


def test_history_with_override_imports_and_reports(knot_dns, opendmarc_db, listed: bytes, tmp_path: Path) -> None:
    hist = tmp_path / "history"
    ctx = _ctx(knot_dns, listed, arc_trusted_sealers="list.arcx", dmarc_history_file=str(hist))
    ctx.services.clock = lambda: time.time() - 60    # reports select messages in the past
    ctx.check("dmarc")
    history_hook(ctx, ACCEPT)
    proc = subprocess.run([require_binary("opendmarc-import"), "--verbose", *opendmarc_db.db_args(),
                           f"--input={hist}"], capture_output=True, timeout=60, text=True)
    assert proc.returncode == 0 and "unknown key" not in proc.stderr, proc.stderr
    rows = opendmarc_db.sql("SELECT m.arc, m.arc_policy, m.disp, m.policy FROM messages m", "opendmarc")
    assert rows == [["0", "0", "2", "16"]]
    seals = opendmarc_db.sql("SELECT s.instance, d.name FROM arcseals s JOIN domains d ON d.id = s.domain",
                             "opendmarc")
    assert seals == [["1", "list.arcx"]]
    with Sink() as sink:      # --test writes the XML and sends nothing, but wants a server
        out = subprocess.run([require_binary("opendmarc-reports"), "--test", *opendmarc_db.db_args(),
                              "--interval=86400", "--domain=pass.dmarcx", "--report-email=dmarc@mx.test.invalid",
                              "--report-org=mx.test.invalid", "--utc", "--smtp-server=127.0.0.1",
                              f"--smtp-port={sink.port}"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert sink.count == 0
    assert out.returncode == 0, out.stderr
    xml = "".join((tmp_path / p).read_text() for p in os.listdir(tmp_path) if p.endswith(".xml"))
    assert "<comment>arc=pass as[1].d=list.arcx as[1].s=sel1 client-ip[1]=192.0.2.1</comment>" in xml
    assert "<disposition>none</disposition>" in xml
