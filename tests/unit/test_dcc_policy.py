# SPDX-License-Identifier: GPL-3.0-or-later
"""DCC in policies: the shipped example loads; misuse is a load-time error with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from aclmilter.errors import PolicyErrors
from aclmilter.policy.loader import load_file, load_text
from aclmilter.stages import Stage

ROOT = Path(__file__).resolve().parents[2]


def test_example_policy_loads() -> None:
    policy = load_file(ROOT / "policies/examples/dcc.yaml")
    assert policy.settings["dccifd_address"] == "/var/dcc/dccifd"
    assert policy.settings["dcc_direct_add_header"] is True
    uses = [u for st in policy.acls["data"].statements for u in st.items]
    dcc = [u for u in uses if u.name == "dcc"]
    assert len(dcc) == 1 and dcc[0].negated


def test_defaults() -> None:
    s = load_text("{}", "t.yaml").settings
    assert (s["dccifd_address"], s["dccifd_options"], s["dccifd_timeout"], s["dcc_direct_add_header"],
            s["dccifd_recipient_user"]) == ("/var/dcc/dccifd", "header", 10.0, False, "none")


def test_tcp_addresses_and_options_are_normalised() -> None:
    s = load_text('settings: {dccifd_address: "::1  10045", dccifd_options: "Header GREY-OFF"}', "t.yaml").settings
    assert (s["dccifd_address"], s["dccifd_options"]) == ("::1 10045", "header grey-off")


@pytest.mark.parametrize("text,needle", [
    ("settings: {dccifd_address: dccifd}", "t.yaml:1:28: settings.dccifd_address"),
    ("settings: {dccifd_address: 'localhost 10045'}", "not an IP address"),
    ("settings: {dccifd_options: 'header,grey-off'}", "commas"),
    ("settings: {dccifd_timeout: 0}", "settings.dccifd_timeout"),
    ("acl: {rcpt: [{deny: {dcc: '*'}}]}", "dcc"),
    ("acl: {data: [{deny: {dcc: '*/defer_okay'}}]}", "unknown option"),
    ("acl: {data: [{deny: {dcc_rcpt: R}}]}", "dcc_rcpt"),
    ("acl: {deliver: [{discard: {dcc_rcpt: X}}]}", "not one of A, R, G, T"),
    ("acl: {deliver: [{discard: {dcc_rcpt: RG}}]}", "not one of A, R, G, T"),
])
def test_misuse_is_refused_at_load(text: str, needle: str) -> None:
    with pytest.raises(PolicyErrors) as info:
        load_text(text, "t.yaml")
    assert needle in str(info.value)


def test_stage_bitmaps() -> None:
    from aclmilter.registry import TABLES
    assert TABLES.items["dcc"].stages == Stage.DATA
    assert TABLES.items["dcc_rcpt"].stages == Stage.DELIVER
    policy = load_text("acl: {data: [{defer: {'!dcc': '*/defer_ok'}}], deliver: [{discard: {dcc_rcpt: 'R : G'}}]}",
                       "t.yaml")
    [use] = policy.acls["deliver"].statements[0].items
    assert use.static == frozenset({"R", "G"})
