"""Result codes of conditions and ACLs, and the seven verbs (Exim's names and semantics)."""

from __future__ import annotations

import enum


class Result(enum.Enum):
    """What a condition or an ACL returned (Exim acl.c OK/FAIL/DEFER/ERROR/DISCARD/FAIL_DROP)."""

    OK = "ok"            # condition true / ACL accepts
    FAIL = "fail"        # condition false / ACL denies
    DEFER = "defer"      # could not be tested / ACL defers (4xx)
    ERROR = "error"      # configuration or expansion error -> 451
    DISCARD = "discard"  # ACL accepts but drops recipients
    DROP = "drop"        # deny, then close the connection

    def negated(self) -> "Result":
        """Return the result of a negated condition: only OK and FAIL flip (DROP counts as FAIL)."""
        if self is Result.OK:
            return Result.FAIL
        if self in (Result.FAIL, Result.DROP):
            return Result.OK
        return self


class Verb(enum.Enum):
    """The seven ACL verbs. No others exist."""

    ACCEPT = "accept"
    DEFER = "defer"
    DENY = "deny"
    DISCARD = "discard"
    DROP = "drop"
    REQUIRE = "require"
    WARN = "warn"
