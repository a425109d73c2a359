"""The `dnslists` condition (Exim's DNSBL/DNSWL test) and `$dnslist_*` variables.

Built only from registry entries: a condition, one keyed check (each DNS answer is asked
once per connection: `ctx.check("dnslist_dns", key=(name, type))`, as Exim caches list
lookups for the SMTP session) and a connection slot for the variables. The syntax and
matching are in checks/dnslists.py.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import lazy, registry
from ..clients.dns import early_lookups_on
from ..context import EvalContext
from ..outcome import Result
from ..stages import ALL

# The implementation (its dataclasses, regexes, ...) is imported when a policy uses the feature:
# `aclmilter check` of a policy without it never pays for it (issue 23, lazy.py).
if TYPE_CHECKING:  # pragma: no cover
    from ..checks import dnslists as dl
    from ..clients import dns_early
    from ..clients.dns_early import MessageLookups
else:
    dl = lazy.module("aclmilter.checks.dnslists")
    dns_early = lazy.module("aclmilter.clients.dns_early")

log = logging.getLogger("aclmilter.dnslists")

_VARIABLES = ("dnslist_domain", "dnslist_matched", "dnslist_value", "dnslist_text")
#: the latest match's variables; like Exim's they last for the SMTP session, and every
#: `dnslists` evaluation clears them first
_LAST = registry.slot("dnslists", scope="connection", factory=dict)


@registry.check("dnslist_dns", scope="connection")
def _dns(ctx: EvalContext, key: tuple[str, str]) -> tuple[str, ...]:
    """The record texts of (name, type): () when there are none. Raises LookupDefer
    (clients.dns.DnsTempError) when the DNS cannot answer now; that is not memoised."""
    name, rdtype = key
    return tuple(ctx.services.get("dns").lookup(name, rdtype))


def _ask_together(ctx: EvalContext, items: "tuple[dl.Item, ...]") -> "MessageLookups | None":
    """Start the first lookup of every list and key of this condition at once (issue 23), so
    the walk in Exim's order below finds them answered or in flight instead of asking one
    after the other. Not with `settings.dns.early: false`, nor with a `dns` service that is
    not the real client (a test's fake), nor for a single name. None when nothing started.

    A list after the first one that matches is asked too, and its answer only cached: the
    condition's result, its variables and its DEFER rules are those of the sequential walk."""
    if not early_lookups_on(ctx.setting("dns")):
        return None
    try:
        names = dl.first_names(items, ctx.conn.client.address)
    except ValueError:          # a key that is no name; the walk reports it as before
        return None
    if len(names) < 2:
        return None
    runner = dns_early.EarlyLookups.of(ctx.services.get("dns"))
    if runner is None:
        return None
    together = runner.message()
    try:
        for name in names:
            together.ask(name, "A")
    except Exception as exc:  # noqa: BLE001 - e.g. no thread for the event loop: ask one by one
        together.close()      # cancel what did start, so no early answer outlives this condition
        log.warning("dnslists: lookups not started together: %s", exc)
        return None
    return together


def _parse(text: str) -> tuple[dl.Item, ...]:
    return dl.parse(text)


@registry.condition("dnslists", ALL, parse=_parse, variables=_VARIABLES)
def dnslists(ctx: EvalContext, items: tuple[dl.Item, ...]) -> Result:
    """The client's address (or each `/key`) is on one of the DNS lists.

    Returns OK at the first list that has it (setting `$dnslist_domain`, `$dnslist_matched`,
    `$dnslist_value`, `$dnslist_text`), FAIL when none has it or there is no client address
    and no key. A lookup that cannot be answered now counts as not listed, unless an earlier
    `+include_unknown` (listed) or `+defer_unknown` (DEFER) says otherwise. With
    `settings.dns.early` (the default) every list is asked at once and the answers are then
    read in the lists' order, so the result is the same as asking one after the other.
    """
    last = _LAST.on(ctx.conn)
    last.clear()
    together = _ask_together(ctx, items)
    try:
        outcome = dl.evaluate(items, ctx.conn.client.address,
                              lambda name, rdtype: ctx.check("dnslist_dns", key=(name.lower(), rdtype)))
    finally:
        if together is not None:
            together.close()     # what the walk did not need is cancelled: nothing outlives it
    if outcome is dl.Outcome.DEFER:
        ctx.note("dnslists", "a DNS list could not be asked (+defer_unknown)", "defer")
        return Result.DEFER
    if outcome is dl.Outcome.NOT_LISTED:
        ctx.note("dnslists", "not listed", "fail")
        return Result.FAIL
    last.update(zip(_VARIABLES, (outcome.domain, outcome.matched, outcome.value, outcome.text), strict=True))
    ctx.note("dnslists", f"{outcome.matched} listed at {outcome.domain} ({outcome.value})", "ok")
    return Result.OK


def _variable(name: str) -> None:
    registry.add_variable(name, lambda ctx: (_LAST.peek(ctx.conn) or {}).get(name, ""),
                          f"set by a `dnslists` match ({name.split('_', 1)[1]}; Exim's ${name})")


for _name in _VARIABLES:
    _variable(_name)
