"""Which milter protocol steps to ask the MTA for, from what the loaded policy needs.

A step the MTA skips (SMFIP_NO*) or does not wait for (SMFIP_NR_*) saves a round trip and a
callback per message. Only steps whose answer is always "continue" are made no-reply; a
failure inside such a step is held by the glue and given at the next step the MTA waits for.
"""

from __future__ import annotations

import functools

import milter

from ..policy.needs import Needs

#: Never wanted: unknown SMTP commands, and EOH (the glue tells the session about the end of
#: headers itself, before the first body chunk or EOM).
ALWAYS_SKIPPED = milter.P_NOUNKNOWN | milter.P_NOEOH
#: Never decide anything on their own: headers, EOH and body chunks are only collected.
ALWAYS_NO_REPLY = milter.P_NR_HDR | milter.P_NR_EOH | milter.P_NR_BODY

#: Pre-EOM step (policy stage key) -> its no-reply bit.
NO_REPLY_BIT = {"connect": milter.P_NR_CONN, "helo": milter.P_NR_HELO, "mail": milter.P_NR_MAIL,
                "rcpt": milter.P_NR_RCPT, "predata": milter.P_NR_DATA}
#: Content steps -> their no-reply bit (used by the glue for header/body callbacks).
CONTENT_NO_REPLY_BIT = {"header": milter.P_NR_HDR, "eoh": milter.P_NR_EOH, "body": milter.P_NR_BODY}


@functools.lru_cache(maxsize=64)   # asked once per MTA connection; a policy has one Needs
def wanted(needs: Needs, *, over_tcp: bool) -> int:
    """The SMFIP_* bits to ask for (the glue intersects them with what the MTA offers).

    Steps the policy cannot refuse at are left unanswered (and DATA skipped) on a unix socket.
    Over TCP the same holds except for DATA, which is always sent and answered: Postfix
    buffers unanswered steps and sends them with the next step it waits for, but smtpd flushes
    its buffer when it hands the milter connection to cleanup after DATA. Whatever was
    pending then (an unanswered DATA, or the DATA macros Postfix sends even for a skipped
    DATA) goes out alone, and cleanup's end-of-message packet waits in Postfix's Nagle buffer
    for our delayed ACK: about 40 ms per message (22 msg/s sequentially instead of ~450, see
    bench/RESULTS.md). An answered DATA carries that ACK at once.
    """
    bits = ALWAYS_SKIPPED | ALWAYS_NO_REPLY
    if not needs.content:
        bits |= milter.P_NOHDRS | milter.P_NOBODY
    for step, bit in NO_REPLY_BIT.items():
        if step not in needs.replies and not (over_tcp and step == "predata"):
            bits |= bit
    if not needs.predata and not over_tcp:
        bits |= milter.P_NODATA
    return bits


def describe(bits: int) -> str:
    """The P_* names set in `bits` (for the debug log)."""
    return " ".join(sorted(n for n in dir(milter) if n.startswith("P_") and bits & getattr(milter, n)))
