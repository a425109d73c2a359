# SPDX-License-Identifier: GPL-3.0-or-later
"""A trusted sealer's AAR vouches through DKIM only for a domain aligned with the From
domain as DMARC aligns it: Organizational Domains from the Public Suffix List, adkim=s."""

from __future__ import annotations

import pytest

from aclmilter.checks.arc import ArcSet
from aclmilter.checks.dmarc_arc import _vouches
from aclmilter.checks.dmarc_discovery import OrgDomains
from aclmilter.checks.dmarc_psl import PslCache

ORGS = OrgDomains("rfc7489", lambda name: [], PslCache(None))


@pytest.mark.parametrize("d, author, strict, vouches", [
    ("example.co.uk", "news.example.co.uk", False, True),   # same Organizational Domain
    ("a.example.com", "b.example.com", False, True),        # siblings align (relaxed)
    ("co.uk", "example.co.uk", False, False),               # a public suffix is no organisation
    ("example.com", "example.com.evil.test", False, False),
    ("a.example.com", "example.com", True, False),          # adkim=s: equal names only
    ("example.com", "example.com", True, True),
])
def test_dkim_pass_vouches_only_when_aligned(d: str, author: str, strict: bool, vouches: bool) -> None:
    aar = f"sealer.example; dkim=pass header.d={d} header.s=s1"     # ArcSet.aar: after i=
    arc_set = ArcSet(1, "sealer.example", "s1", True, True, "none", aar)
    assert _vouches(arc_set, author, lambda dom: ORGS.aligned(dom, author, strict)) is vouches
