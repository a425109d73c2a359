"""The one place tests build an EvalContext (no daemons, no session, no engine).

`make_ctx` makes a real EvalContext with real Services over a minimal Policy; every test helper
that needs a context calls it (tests/unit/test_test_rules.py checks that no other file in
tests/ constructs EvalContext). `at` moves a context to another stage or recipient, as the
session does for the deliver stage. `loader_settings` builds settings the way the policy
loader does (every registered default, then the given raw values through their parsers).
"""

from __future__ import annotations

import random
from typing import Any, Callable

import aclmilter.conditions  # noqa: F401  - registers conditions, lookups, settings, services
from aclmilter import errors, lists, registry
from aclmilter.actions import Edits
from aclmilter.context import EvalContext
from aclmilter.policy.model import Policy
from aclmilter.services import Services
from aclmilter.stages import Stage
from aclmilter.state import ClientIdentity, Connection, Recipient, Transaction

#: `txn=` default: build a Transaction from sender/headers/recipients/body.
NEW = object()


class FakeDns:
    """`lookup(name, rdtype)` from a table; names in `defer` raise LookupDefer.

    For code that only calls `lookup()` (lists, lookups). Code that needs typed answers,
    deadlines or the client's error mapping uses the real DnsClient over
    tests/harness/fake_resolver.ZoneResolver, or a real Knot.
    """

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


def loader_settings(raw: dict[str, Any] | None = None, **parsed: Any) -> dict[str, Any]:
    """Every registered default, then `raw` through its registered parser, then `parsed` as is."""
    out = {name: s.default for name, s in registry.TABLES.settings.items()}
    for name, value in (raw or {}).items():
        out[name] = registry.TABLES.settings[name].parse(value)
    out.update(parsed)
    return out


def make_ctx(*, stage: Stage | str = Stage.RCPT, settings: dict[str, Any] | None = None,
             address: str = "192.0.2.10", port: str = "", name: str = "", local_address: str = "",
             helo: str = "", hostname: str = "", conn: Connection | None = None,
             txn: Any = NEW, sender: str = "", headers: list[tuple[str, str]] | None = None,
             recipients: list[Recipient] | None = None, body: bytes = b"", queue_id: str = "",
             acl_m: dict[str, str] | None = None, edits: bool = False,
             rcpt: Recipient | str | None = None, named: dict[str, dict[str, str]] | None = None,
             dns: Any = None, overrides: dict[str, Any] | None = None, services: Services | None = None,
             clock: Callable[[], float] | None = None, seed: int | None = None) -> EvalContext:
    """A real EvalContext at `stage` (default RCPT).

    - client: `conn`, else a Connection from address/port/name/local_address/helo/hostname;
    - transaction: `txn` (None: none yet, as at CONNECT), else one from sender, headers,
      recipients, body, queue_id, acl_m (with an empty Edits when `edits`);
    - recipient: `rcpt` (an address string becomes a Recipient);
    - policy: `settings` as given (see loader_settings) and `named` lists (kind -> name -> text);
    - services: `services`, else real Services over the settings with `overrides` (`dns`
      is a shortcut for overrides["dns"]), `clock` and a Random(`seed`).
    """
    settings = dict(settings or {})
    if conn is None:
        conn = Connection(client=ClientIdentity(address=address, port=port, name=name, local_address=local_address),
                          helo=helo, hostname=hostname)
    if txn is NEW:
        txn = Transaction(sender=sender, headers=list(headers or []), recipients=list(recipients or []),
                          queue_id=queue_id, acl_m=dict(acl_m or {}))
        if body:
            txn.body.write(body)
        if edits:
            txn.edits = Edits()
    if services is None:
        over = dict(overrides or {})
        if dns is not None:
            over["dns"] = dns
        kwargs: dict[str, Any] = {"overrides": over, "rng": random.Random(seed)}
        if clock is not None:
            kwargs["clock"] = clock
        services = Services(settings, **kwargs)
    policy_lists = {kind: {n: lists.parse_list(t, kind) for n, t in entries.items()}
                    for kind, entries in (named or {}).items()}
    policy = Policy(file="t.yaml", settings=settings, lists=policy_lists, acls={})
    if isinstance(rcpt, str):
        rcpt = Recipient(rcpt)
    return EvalContext(conn, txn, _stage(stage), services, policy, rcpt)


def at(ctx: EvalContext, stage: Stage | str | None = None, rcpt: Recipient | None = None) -> EvalContext:
    """The same connection, transaction, services and policy at another stage and/or recipient."""
    return EvalContext(ctx.conn, ctx.txn, _stage(stage) if stage is not None else ctx.stage, ctx.services,
                       ctx.policy, rcpt)


def _stage(stage: Stage | str) -> Stage:
    return stage if isinstance(stage, Stage) else Stage.from_key(stage)
