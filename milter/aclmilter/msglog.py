"""The one-line-per-message record: queue id, client, HELO, sender, recipients, decision."""

from __future__ import annotations

from .registry import TABLES
from .state import Connection, Transaction
from .summary import check_words


def message_record(conn: Connection, txn: Transaction | None, qid: str, outcome: str, where: str,
                   monitor: bool) -> dict:
    """The record service/logline.py writes. `checks` holds a word per check that ran
    (summary.check_words); features add fields of their own (registry.record_field: `prx`,
    the PROXY peer)."""
    client = conn.client
    rec = {
        "queue_id": qid,
        "client": f"{client.name or 'unknown'}[{client.address}]",
        "helo": conn.helo,
        "sender": f"<{txn.sender}>" if txn else "",
        "recipients": [r.address for r in txn.recipients if r.accepted] if txn else [],
        "decision": outcome,
        "where": where,
        "checks": check_words(txn.results) if txn else {},
        "dry_run": monitor,
    }
    for entry in TABLES.record_fields.values():
        rec[entry.name] = entry.get(conn)
    return rec

