# SPDX-License-Identifier: GPL-3.0-or-later
"""Start a message's DNS lookups as soon as their names are known (issue 23).

The session tells this module what it sees — MAIL FROM, then each header — and it starts,
in the background (clients/dns_early.py), the questions the policy's checks will ask later:

- MAIL FROM: the sender domain's TXT (SPF; the HELO name for the null sender), and when that
  answer is an SPF record, the TXT of its `include:`/`redirect=` targets, which are
  independent of each other and so asked together;
- each DKIM-Signature header: the key at `s._domainkey.d`;
- the From header: `_dmarc.<From domain>`.

Only for the checks the loaded policy uses (`Needs.early`, from policy/needs.py): a policy
without SPF never asks an SPF question early. Guessing a name wrongly (an odd From header,
an SPF macro) costs one unneeded query and nothing else: the checks themselves still ask
every question they need, and find the early answers in the DNS client (same answers, same
temporary errors, same deadlines — see clients/dns_early.py). `close()` at the end of the
transaction cancels what is still running.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from . import lazy

if TYPE_CHECKING:  # pragma: no cover
    from .clients import dns_early
    from .clients.dns_early import MessageLookups
else:
    # the event-loop thread (concurrent.futures, signal, ...) is imported by the first message of a
    # policy that asks the DNS early: never by `aclmilter check`, nor a dry run without DNS checks
    dns_early = lazy.module("aclmilter.clients.dns_early")

# the domain of the last address in a From value: "Name <a@b.example>" or "a@b.example"
_FROM_DOMAIN = re.compile(r"@([A-Za-z0-9._-]+)\s*>?\s*(?:\([^()]*\)\s*)?$")
_WS = re.compile(r"\s+")
_SPF_TARGET = re.compile(r"(?:^|\s)[+?~-]?(?:include:|redirect=)(\S+)", re.I)


def for_message(services: Any, wants: frozenset[str], sender: str, helo: str) -> "MessageEarly | None":
    """The early lookups of a new transaction, or None when the policy needs none (or the
    `dns` service is a test's fake). Starts the SPF question at once."""
    if not wants:
        return None
    runner = dns_early.EarlyLookups.of(services.get("dns"))
    if runner is None:
        return None
    early = MessageEarly(runner.message(), wants)
    if "spf" in wants or "spf_guess" in wants:
        domain = sender.rpartition("@")[2] if sender else helo
        if domain:
            early.lookups.ask(domain, "TXT", _follow_spf)
    return early


def _follow_spf(lookups: MessageLookups, answer: Any) -> None:
    """An SPF record's include/redirect targets, asked together (no macros: those need the
    evaluation's own data)."""
    for text in answer.texts():
        if not text.lower().startswith("v=spf1"):
            continue
        for target in _SPF_TARGET.findall(text):
            if "%" not in target:
                lookups.ask(target, "TXT", _follow_spf)


def _selector_and_domain(value: str) -> dict[str, str]:
    """The s= and d= values of a DKIM-Signature field, the last of each (dkimpy refuses
    duplicates anyway). A split at `;`, not a pattern: the field is ~500 characters of
    which only these two tags matter."""
    tags = {}
    for part in value.split(";"):
        key, eq, tag_value = part.partition("=")
        key = key.strip()
        if eq and key in ("s", "d"):
            tags[key] = tag_value
    return tags


class MessageEarly:
    """What one transaction asked early; the session calls `header` and `close`."""

    __slots__ = ("lookups", "dkim", "dmarc", "seen_from")

    def __init__(self, lookups: MessageLookups, wants: frozenset[str]) -> None:
        self.lookups = lookups
        self.dkim = "dkim" in wants
        self.dmarc = "dmarc" in wants
        self.seen_from = False

    def header(self, name: str, value: str) -> None:
        """Start the lookup this header makes known, if any. Never raises: an early lookup
        is an optimisation, and the check will ask for itself."""
        try:
            self._header(name, value)
        except Exception:  # noqa: BLE001
            pass

    def _header(self, name: str, value: str) -> None:
        lname = name.lower()
        if lname == "dkim-signature" and self.dkim:
            tags = _selector_and_domain(value)
            selector, domain = _WS.sub("", tags.get("s", "")), _WS.sub("", tags.get("d", ""))
            if selector and domain:
                self.lookups.ask(f"{selector}._domainkey.{domain}", "TXT")
        elif lname == "from" and self.dmarc and not self.seen_from:
            self.seen_from = True      # a second From header gives no DMARC domain at all
            m = _FROM_DOMAIN.search(value.strip())
            if m:
                self.lookups.ask(f"_dmarc.{m.group(1).rstrip('.').lower()}", "TXT")

    def close(self) -> None:
        """The transaction ended: cancel what is still running."""
        self.lookups.close()
