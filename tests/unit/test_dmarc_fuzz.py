# SPDX-License-Identifier: GPL-3.0-or-later
"""Hostile input never crashes the From parser or DKIM, and never yields an unsafe domain."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from aclmilter.checks.dkim import verify_message
from aclmilter.checks.dmarc_from import author_domain

SAFE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$")
PIECES = st.sampled_from(['"', "<", ">", "@", ",", ";", ":", "(", ")", "\\", " ", "\r\n\t", "a", "example.com",
                          "ü", "=?utf-8?q?x?=", "[1.2.3.4]", "."])


@settings(max_examples=600, deadline=None)
@given(st.lists(PIECES, max_size=20).map("".join))
def test_from_parser_total(value):
    got = author_domain([("From", value)])
    assert got.domain is None or SAFE.match(got.domain)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_dkim_never_raises(tail):
    verify_message(b"DKIM-Signature: v=1; a=rsa-sha256; d=x.example; s=s; h=from; bh=AA==; b=" + tail
                   + b"\r\nFrom: a@x.example\r\n\r\nbody\r\n", lambda name: [])
