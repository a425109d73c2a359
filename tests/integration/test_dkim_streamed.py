# SPDX-License-Identifier: GPL-3.0-or-later
"""DKIM over a spooled body (read back in chunks), against real DNS (Knot): l= honoured,
simple and relaxed, several signatures sharing one body pass, a changed body fails."""

from __future__ import annotations

import dkim
import pytest

from aclmilter.checks.dkim import DkimStatus
from tests.fixtures.dmarc.ctxhelp import KEY_SEL1, KEY_THIRD, make_ctx, message, settings_for

pytestmark = pytest.mark.integration

BIG = b"Some  text\twith   runs of  white space   \r\n" * 40000     # 1.7 MB: spooled to a file


def _sign(msg: bytes, canon: tuple[bytes, bytes], *, length: bool = False, domain: str = "pass.dmarcx",
          key: bytes = KEY_SEL1) -> bytes:
    sig = dkim.sign(msg, b"sel1", domain.encode(), key, canonicalize=canon, length=length,
                    include_headers=[b"from", b"to", b"subject", b"message-id"])
    return sig + msg


def _statuses(raw: bytes, dns) -> list[DkimStatus]:
    ctx = make_ctx(raw, settings=settings_for(dns.settings()))
    assert ctx.txn is not None and ctx.txn.body.spooled
    try:
        return [s.status for s in ctx.check("dkim").signatures]
    finally:
        ctx.txn.close()                 # the spool file (an open one is a ResourceWarning)


@pytest.mark.parametrize("canon", [(b"simple", b"simple"), (b"relaxed", b"relaxed")])
def test_length_tag_allows_appended_text_and_nothing_else(knot_dns, canon):
    raw = _sign(message(body=BIG), canon, length=True)
    assert _statuses(raw + b"-- \r\nappended by a list\r\n", knot_dns) == [DkimStatus.PASS]
    tampered = raw.replace(b"Some  text", b"Some  test", 1)
    assert _statuses(tampered, knot_dns) == [DkimStatus.FAIL]


def test_two_signatures_over_one_spooled_body(knot_dns):
    raw = _sign(_sign(message(body=BIG), (b"relaxed", b"relaxed")), (b"simple", b"simple"),
                domain="third.dmarcx", key=KEY_THIRD)
    assert _statuses(raw, knot_dns) == [DkimStatus.PASS, DkimStatus.PASS]
    assert _statuses(raw.replace(b"runs of", b"runs  of", 1), knot_dns) == [DkimStatus.FAIL, DkimStatus.PASS]
