# SPDX-License-Identifier: GPL-3.0-or-later
"""Exim-native SRS: the codec against `exim -be` output, rotation, expiry, and the session's edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from aclmilter.checks import srs
from aclmilter.errors import PolicyErrors
from aclmilter.runtime import Runtime
from aclmilter.services import Services
from aclmilter.session import Action, Session

#: Recorded with Debian's exim4-daemon-heavy 4.96 (`exim -be`, $tod_epoch = 1796616372):
#: ${srs_encode{SECRET}{localpart@example.tld}{my.tld}} and friends.
EPOCH = 1796616372
EXIM_VECTORS = [
    (("SECRET", "localpart@example.tld", "my.tld"), "SRS0=1fe4=j2=example.tld=localpart@my.tld"),
    (("SECRET", "LocalPart@Example.tld", "my.tld"), "SRS0=1fe4=j2=Example.tld=LocalPart@my.tld"),
    (("SECRET", "", "my.tld"), ""),
    (("SECRET", "<a@b.c>", "my.tld"), "SRS0=26e4=j2=b.c=a@my.tld"),
    (("SECRET", "SRS0=1fe4=j2=example.tld=localpart@my.tld", "other.tld"),
     "SRS0=6c2e=j2=my.tld=SRS0=1fe4=j2=example.tld=localpart@other.tld"),
]


@pytest.mark.parametrize("args,expected", EXIM_VECTORS)
def test_encode_matches_exim(args: tuple[str, str, str], expected: str) -> None:
    assert srs.encode(*args, now=EPOCH) == expected


def _stamp(days_ago: int) -> str:
    return srs.timestamp(EPOCH - days_ago * srs.DAY)


@pytest.mark.parametrize("days_ago,ok", [(0, True), (1, True), (10, True), (11, False), (32, False),
                                         (-1, False)])
def test_inbound_age_limit_is_exims(days_ago: int, ok: bool) -> None:
    # Exim 4.96: `${if inbound_srs{SRS0=1fe4=<stamp>=example.tld=localpart}{SECRET}...}` is true
    # up to 10 days back and false for 11 days or a stamp in the future.
    found = srs.decode(f"SRS0=1fe4={_stamp(days_ago)}=example.tld=localpart", ("SECRET",), EPOCH)
    assert (found.status is srs.Status.OK) is ok
    if ok:
        assert found.recipient == "localpart@example.tld"


def test_decode_rotation_forgery_and_case() -> None:
    old = srs.encode("old-secret", "a=b@orig.example", "fwd.example", EPOCH).partition("@")[0]
    assert srs.decode(old, ("new-secret", "old-secret"), EPOCH) == srs.Decoded(srs.Status.OK, "a=b@orig.example", 1)
    assert srs.decode(old, ("new-secret",), EPOCH).status is srs.Status.BAD_HASH
    assert srs.decode("srs0" + old[4:], ("old-secret",), EPOCH).status is srs.Status.OK   # prefix: any case
    assert srs.decode(old.upper(), ("old-secret",), EPOCH).status is not srs.Status.OK     # hash: exact
    assert srs.decode("alice", ("old-secret",), EPOCH).status is srs.Status.NOT_SRS


POLICY = """
settings:
  primary_hostname: mx.fwd.example
  srs_secrets: [new-secret, old-secret]
acl:
  rcpt:
    - accept:
        senders: ":"
        domains: fwd.example
        inbound_srs: $local_part
        control: srs_reverse
        logwrite: "bounce for $srs_recipient"
    - deny:
        senders: ":"
        domains: fwd.example
        local_parts: "^[Ss][Rr][Ss]0="
        message: "550 5.1.1 bad SRS address"
    - accept:
        recipients: list@fwd.example
        control: srs_forward/fwd.example
    - accept
"""


def _session(tmp_path: Path, policy: str = POLICY) -> Session:
    path = tmp_path / "p.yaml"
    path.write_text(policy)
    rt = Runtime(path, monitor=False,
                 services_factory=lambda settings: Services(settings, clock=lambda: float(EPOCH)))
    rt.load()
    s = Session(rt)
    s.connect("[192.0.2.1]", "inet", "192.0.2.1", 4000, {})
    s.helo("client.example", {})
    return s


def test_forwarded_message_gets_srs0_sender(tmp_path: Path) -> None:
    s = _session(tmp_path)
    s.mail("<alice@orig.example>", [], {})
    assert s.rcpt("<list@fwd.example>", [], {}).action is Action.CONTINUE
    s.data({})
    result = s.eom({})
    assert result.edits.sender == srs.encode("new-secret", "alice@orig.example", "fwd.example", EPOCH)
    # a message not forwarded keeps its sender; a bounce (null sender) is never rewritten
    s.mail("<alice@orig.example>", [], {})
    s.rcpt("<local@fwd.example>", [], {})
    assert s.eom({}).edits.sender is None


def test_bounce_to_srs_address_goes_back_to_the_original_sender(tmp_path: Path) -> None:
    s = _session(tmp_path)
    srs0 = srs.encode("old-secret", "alice@orig.example", "fwd.example", EPOCH - 3 * srs.DAY)
    s.mail("<>", [], {})
    assert s.rcpt(f"<{srs0}>", ["NOTIFY=NEVER"], {}).action is Action.CONTINUE
    edits = s.eom({}).edits
    assert [d.address for d in edits.rcpt_deletes] == [f"<{srs0}>"]
    assert [(a.address, a.params) for a in edits.rcpt_adds] == [("alice@orig.example", ("NOTIFY=NEVER",))]
    assert edits.sender is None
    # forged (wrong secret) or expired: refused at RCPT
    s.mail("<>", [], {})
    forged = srs.encode("other", "alice@orig.example", "fwd.example", EPOCH)
    assert s.rcpt(f"<{forged}>", [], {}).action is Action.REJECT
    expired = srs.encode("new-secret", "alice@orig.example", "fwd.example", EPOCH - 11 * srs.DAY)
    assert s.rcpt(f"<{expired}>", [], {}).action is Action.REJECT


def test_srs_encode_expansion_and_load_errors(tmp_path: Path) -> None:
    s = _session(tmp_path, POLICY.replace('logwrite: "bounce for $srs_recipient"',
                                          'set: {acl_m_x: "${srs_encode{SECRET}{$sender_address}{my.tld}}"}'))
    s.mail("<>", [], {})
    srs0 = srs.encode("new-secret", "localpart@example.tld", "fwd.example", EPOCH)
    s.rcpt(f"<{srs0}>", [], {})
    assert s.txn.acl_m["acl_m_x"] == ""                 # empty return path -> empty (Exim)
    bad = tmp_path / "bad.yaml"
    bad.write_text("acl:\n  rcpt:\n    - accept: {condition: '${srs_encode{a}{b}}'}\n")
    with pytest.raises(Exception) as exc:
        Runtime(bad).load()
    assert "bad.yaml:3" in str(exc.value) or "bad.yaml:3" in "".join(map(str, getattr(exc.value, "errors", [])))


@pytest.mark.parametrize("item, says", [
    ("control: srs_forward/fwd.example", "control 'srs_forward' needs settings.srs_secrets"),
    ("inbound_srs: $local_part", "inbound_srs needs settings.srs_secrets"),
    ("inbound_srs: ${if eq{$domain}{x}{$local_part}{}}", "inbound_srs needs settings.srs_secrets"),
])
@pytest.mark.parametrize("settings", ["", "settings:\n  srs_secrets: []\n"])
def test_srs_items_without_secrets_are_load_errors(tmp_path: Path, item: str, says: str, settings: str) -> None:
    """The condition itself relies on this: it never runs without a secret."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"acl:\n  rcpt:\n    - accept:\n        {item}\n" + settings)
    with pytest.raises(PolicyErrors) as exc:
        Runtime(bad).load()
    assert "bad.yaml:4" in str(exc.value.errors[0]) and says in str(exc.value.errors[0])
