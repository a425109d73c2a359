"""Build a real EvalContext for unit tests of expansions, lists and lookups (no daemons)."""

from __future__ import annotations

from typing import Any

import aclmilter.conditions  # noqa: F401  - registers the lookup types
from aclmilter import errors, lists
from aclmilter.context import EvalContext
from aclmilter.policy.model import Policy
from aclmilter.services import Services
from aclmilter.stages import Stage
from aclmilter.state import ClientIdentity, Connection, Recipient, Transaction


class FakeDns:
    """`lookup(name, rdtype)` from a table; names in `defer` raise LookupDefer."""

    def __init__(self, records: dict[tuple[str, str], list[str]] | None = None,
                 defer: set[str] | None = None) -> None:
        self.records = records or {}
        self.defer = defer or set()
        self.queries: list[tuple[str, str]] = []

    def lookup(self, name: str, rdtype: str) -> list[str]:
        self.queries.append((name, rdtype))
        if name in self.defer:
            raise errors.LookupDefer(f"SERVFAIL for {name}")
        return list(self.records.get((name.lower(), rdtype), []))


def make_ctx(*, address: str = "192.0.2.10", name: str = "", headers: list[tuple[str, str]] | None = None,
             named: dict[str, dict[str, str]] | None = None, settings: dict[str, Any] | None = None,
             dns: FakeDns | None = None, txn: bool = True, sender: str = "") -> EvalContext:
    """A context at RCPT with one client, optional headers, named lists (kind -> name -> text)."""
    policy_lists = {kind: {n: lists.parse_list(t, kind) for n, t in entries.items()}
                    for kind, entries in (named or {}).items()}
    conn = Connection(client=ClientIdentity(address=address, name=name, local_address="198.51.100.1"))
    transaction = Transaction(sender=sender, headers=list(headers or [])) if txn else None
    overrides = {"dns": dns} if dns is not None else {}
    policy = Policy(file="t.yaml", settings=dict(settings or {}), lists=policy_lists, acls={})
    return EvalContext(conn, transaction, Stage.RCPT, Services({}, overrides=overrides), policy,
                       rcpt=Recipient("user@example.org"))
