"""Internal-error policy: an exception escaped while handling a callback.

It is logged with its traceback and counted, and the MTA gets the answer of
`settings.on_internal_error` (accept, reject, tempfail; anything else tempfails). The
session's guards and the pymilter glue's use the same answers.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from .replies import INTERNAL_REJECT, INTERNAL_TEMPFAIL
from .responses import CONTINUE, Action, Response

log = logging.getLogger("aclmilter")

_INTERNAL = {"accept": CONTINUE, "reject": Response(Action.REJECT, INTERNAL_REJECT)}
_INTERNAL_DEFAULT = Response(Action.TEMPFAIL, INTERNAL_TEMPFAIL)


def internal_response(mode: str) -> Response:
    """The answer for an internal error under `settings.on_internal_error` = `mode`
    (accept, reject, tempfail; anything else tempfails). Every guard uses this one."""
    return _INTERNAL.get(mode, _INTERNAL_DEFAULT)


def internal_error(qid: str, where: str, settings: dict, metrics: Any) -> Response:
    """Call from an `except` block: log the exception with its traceback, count it, and
    return the answer `settings` asks for."""
    log.error("%s internal error at %s:\n%s", qid, where, traceback.format_exc())
    if metrics is not None:
        metrics.internal_error(where)
    return internal_response(settings.get("on_internal_error", "tempfail"))
