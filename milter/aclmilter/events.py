# SPDX-License-Identifier: GPL-3.0-or-later
"""Reception event actions (Exim's `event_action`, for the events a milter observes).

The session calls `fire` at each event when `settings.event_action` is set. The expansion
runs with `$event_name` and `$event_data` bound; its result matters only for `tcp:connect`
and `smtp:connect`, where a non-empty result refuses the connection. A failed expansion (a
dead Redis, a forced failure, an unknown host) is logged and counts as an empty result:
an event action never defers or refuses mail because it could not run.

Events and their `$event_data`:
  tcp:connect      the MTA announced a connection (before the connect ACL)   ""
  smtp:connect     the connect ACL accepted (where Exim sends its banner)    ""
  msg:rcpt:reject  a recipient was refused with 5xx                          the reply text
  msg:rcpt:defer   a recipient was refused with 4xx                          the reply text
  msg:reject       MAIL, DATA or the message was refused with 5xx           the reply text
  msg:defer        MAIL, DATA or the message was refused with 4xx           the reply text
  msg:complete     the message's final decision at end of message           accept, reject,
                                                                             tempfail or discard
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .errors import ExpansionFailed, ForcedFail, LookupDefer

if TYPE_CHECKING:  # pragma: no cover
    from .context import EvalContext
    from .expand import Expansion

log = logging.getLogger("aclmilter")

EVENTS = ("tcp:connect", "smtp:connect", "msg:rcpt:defer", "msg:rcpt:reject",
          "msg:complete", "msg:reject", "msg:defer")
#: Events whose non-empty result refuses the connection.
REFUSING = frozenset({"tcp:connect", "smtp:connect"})


def fire(ctx: "EvalContext", action: "Expansion", name: str, data: str) -> str:
    """Expand `event_action` for one event; returns its result, "" when it could not run."""
    ctx.locals["event_name"] = name
    ctx.locals["event_data"] = data
    try:
        result = action.evaluate(ctx)
    except ForcedFail:
        return ""
    except (ExpansionFailed, LookupDefer) as exc:
        log.warning("event_action for %s failed: %s", name, exc)
        return ""
    except Exception:  # an event action never breaks the mail flow
        log.exception("event_action for %s raised", name)
        return ""
    return result.strip()
