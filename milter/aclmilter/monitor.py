"""Monitor mode (`settings.dry_run`, `serve --dry-run`): refusals are logged, never given.

The first refusal not given is remembered (for the connection: connect/HELO; for the
transaction: reset at MAIL) and named in the dry-run header at end of message. At EOM the
header edits stay; recipient changes and the quarantine are left out.
"""

from __future__ import annotations

import logging

from .actions import Edits, HeaderAdd, HeaderPosition, clean_line
from .responses import Response

log = logging.getLogger("aclmilter")


class Monitor:
    """What monitor mode did not do in one connection."""

    __slots__ = ("would_conn", "would")

    def __init__(self) -> None:
        self.would_conn: tuple[str, str, str] | None = None    # (action, stage, where)
        self.would: tuple[str, str, str] | None = None

    def new_connection(self) -> None:
        self.would_conn = None

    def new_transaction(self) -> None:
        self.would = None

    def note(self, action: str, stage: str, where: str) -> None:
        """Remember the first refusal not given (connect/HELO ones for the connection)."""
        if stage in ("connect", "helo"):
            self.would_conn = self.would_conn or (action, stage, where)
        elif self.would is None:
            self.would = (action, stage, where)

    def withhold(self, qid: str, response: Response, stage: str, where: str) -> None:
        """Log a refusal that is not given, and remember it."""
        log.info("%s dry-run: would %s at %s (%s): %s", qid, response.action.value, stage, where,
                 response.reply.text() if response.reply else "")
        self.note(response.action.value, stage, where)

    def text(self, edits: Edits) -> str:
        """What was not done: `would reject at mail (policy.yaml:12)`, or `would accept`,
        plus the recipient changes and quarantine left out."""
        first = self.would_conn or self.would
        text = f"would {first[0]} at {first[1]} ({first[2]})" if first else "would accept"
        if edits.rcpt_deletes:
            text += f"; would remove {len(edits.rcpt_deletes)} recipient(s)"
        if edits.rcpt_adds:
            text += f"; would add {len(edits.rcpt_adds)} recipient(s)"
        if edits.quarantine:
            text += "; would quarantine"
        return text

    def edits(self, edits: Edits, header: str | None) -> Edits:
        """The edits given in monitor mode: every header change stays (A-R, Received-SPF,
        X-DCC, verdict headers, the policy's add_header, removals of forged A-R); recipient
        changes and the quarantine go; `header` (settings.dry_run_header) names what was
        not done."""
        kept = Edits(header_adds=list(edits.header_adds), header_removes=list(edits.header_removes))
        if header:
            kept.add_header(HeaderAdd(header, clean_line(self.text(edits)), HeaderPosition.END, "dry-run"))
        return kept

