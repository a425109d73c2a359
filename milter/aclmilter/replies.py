"""The one definition of each reply aclmilter gives for its own trouble (not the policy's).

Every path that answers for an internal error (the session's callback guard, the pymilter
glue's guard, a `discard` in the predata ACL, a deferral in the deliver ACL without a reply
of its own, the reply mapper's fallbacks) uses these objects, so the texts cannot drift.
RFC 3463: X.3.0 is "other or undefined mail system status" — the fault is ours, not the
sender's (X.7.x would claim a security policy refused the message).
"""

from __future__ import annotations

from .actions import DEFAULT_DEFER_TEXT, Reply

#: settings.on_internal_error = tempfail (the default), and any deferral we have no text for.
INTERNAL_TEMPFAIL = Reply(451, "4.3.0", (DEFAULT_DEFER_TEXT,))
#: settings.on_internal_error = reject.
INTERNAL_REJECT = Reply(550, "5.3.0", ("Internal error",))
