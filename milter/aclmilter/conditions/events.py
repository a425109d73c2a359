# SPDX-License-Identifier: GPL-3.0-or-later
"""`settings.event_action` and the `$event_name` / `$event_data` variables (see ../events.py).

The setting is parsed once at load; its variables must exist, and every
`${lookup redis{...}}` in it must start with a literal, allowed command word (XADD, HSET,
...; the expansion parser refuses a command word that is not fixed text), so network data
bound into `$event_data` can only ever be an argument.
"""

from __future__ import annotations

from typing import Any

from .. import expand, registry
from ..context import EvalContext
from ..errors import SyntaxProblem
from ..expand import names
from .redis import disallowed_commands


def _event_action(value: Any) -> expand.Expansion | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SyntaxProblem("event_action is an expansion string")
    parsed = expand.parse(value)
    unknown = sorted(v for v in parsed.variables() if not names.known_variable(v)
                     and not v.startswith(("h_", "bh_", "rh_", "lh_")))
    if unknown:
        raise SyntaxProblem(f"unknown variable ${unknown[0]}")
    refused = disallowed_commands(parsed)
    if refused:
        raise SyntaxProblem(f"redis command {refused[0]!r} is not allowed")
    return parsed


registry.setting("event_action", _event_action, None,
                 "expansion run on tcp:connect, smtp:connect, msg:rcpt:defer, msg:rcpt:reject, "
                 "msg:reject, msg:defer and msg:complete with $event_name and $event_data; a "
                 "non-empty result on tcp:connect or smtp:connect refuses the connection")


@registry.variable("event_name")
def _event_name(ctx: EvalContext) -> str | None:
    """The event being reported (`tcp:connect`, `msg:complete`, ...); empty outside event_action."""
    return None


@registry.variable("event_data")
def _event_data(ctx: EvalContext) -> str | None:
    """The event's data (a reply text, the final decision); empty outside event_action."""
    return None
