"""The one-line-per-message record: queue id, client, HELO, sender, recipients, decision."""

from __future__ import annotations

from typing import Any

from .state import Connection, Transaction
from .summary import check_words


def message_record(conn: Connection, txn: Transaction | None, qid: str, outcome: str, where: str,
                   monitor: bool) -> dict:
    """The record service/logline.py writes. `checks` holds a word per check that ran
    (summary.check_words), `prx` the PROXY peer as Exim's `PRX=` shows it."""
    client = conn.client
    return {
        "queue_id": qid,
        "client": f"{client.name or 'unknown'}[{client.address}]",
        "helo": conn.helo,
        "sender": f"<{txn.sender}>" if txn else "",
        "recipients": [r.address for r in txn.recipients if r.accepted] if txn else [],
        "decision": outcome,
        "where": where,
        "checks": check_words(txn.results) if txn else {},
        "prx": proxy_peer(client) if client.proxied else "",
        "dry_run": monitor,
    }


def proxy_peer(client: Any) -> str:
    """The PROXY peer as Exim's `PRX=` shows it: `[address]:port`, the address alone, or
    `yes` when the proxy's address is not known (Postfix does not tell it to a milter)."""
    if not client.proxy_address:
        return "yes"
    return f"[{client.proxy_address}]:{client.proxy_port}" if client.proxy_port else client.proxy_address
