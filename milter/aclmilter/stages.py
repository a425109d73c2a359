"""ACL stages (Exim ACL names) and their mapping onto milter callbacks."""

from __future__ import annotations

import enum


class Stage(enum.IntFlag):
    """One bit per ACL stage, so the registry can store permissions as a bitmap (Exim acl.c)."""

    CONNECT = enum.auto()   # xxfi_connect   <- acl_smtp_connect
    HELO = enum.auto()      # xxfi_helo      <- acl_smtp_helo
    MAIL = enum.auto()      # xxfi_envfrom   <- acl_smtp_mail
    RCPT = enum.auto()      # xxfi_envrcpt   <- acl_smtp_rcpt (once per recipient)
    PREDATA = enum.auto()   # xxfi_data      <- acl_smtp_predata
    DATA = enum.auto()      # xxfi_eom       <- acl_smtp_data (after DKIM, DMARC, DCC, scanner)
    DELIVER = enum.auto()   # xxfi_eom, once per recipient: BMI router preconditions analogue

    @property
    def key(self) -> str:
        """The policy file key of this stage (lower-case name)."""
        key = _KEYS.get(self)
        if key is None:
            key = _KEYS[self] = (self.name or "").lower()
        return key

    @classmethod
    def from_key(cls, key: str) -> "Stage":
        """Return the stage for a policy key; KeyError if there is none."""
        return cls[key.upper()]


_KEYS: dict["Stage", str] = {}

#: The stages in the order a transaction passes through them.
ORDERED: tuple[Stage, ...] = (
    Stage.CONNECT, Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.PREDATA, Stage.DATA, Stage.DELIVER,
)

ALL = Stage(0)
for _s in ORDERED:
    ALL |= _s

#: Stages that belong to a message (Exim's "message ACLs").
MESSAGE = Stage.MAIL | Stage.RCPT | Stage.PREDATA | Stage.DATA | Stage.DELIVER
#: Stages before the end of data (where controls that prepare the message scan may be set).
BEFORE_DATA = Stage.CONNECT | Stage.HELO | Stage.MAIL | Stage.RCPT | Stage.PREDATA
#: Stages where a single recipient is current ($local_part, $domain).
PER_RECIPIENT = Stage.RCPT | Stage.DELIVER


def names(stages: Stage) -> list[str]:
    """Return the policy keys of the stages set in a bitmap, in transaction order."""
    return [s.key for s in ORDERED if s & stages]
