"""Turn an end-of-message result into the ordered list of libmilter modification calls.

Order (fixed): the envelope sender change (chgfrom), recipient deletions, recipient additions, header removals (already ordered
highest index first by the session), header additions, quarantine. Planning is pure so it is
unit tested; `execute` performs the calls on a pymilter `Milter.Base` instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..actions import Edits, HeaderPosition
from .wiretext import safe_text


@dataclass(frozen=True)
class Op:
    """One modification call: method name on Milter.Base and its arguments."""

    method: str          # chgfrom, delrcpt, addrcpt, chgheader, addheader, quarantine
    args: tuple


def _bracket(address: str) -> str:
    a = address.strip()
    return a if a.startswith("<") else f"<{a}>"


def header_index(position: HeaderPosition, headers: Sequence[tuple[str, str]], mta_hides_own_received: bool) -> int:
    """The smfi_insheader index for an insert position, or -1 for "append at the end".

    Postfix hides its own Received: from milters but counts it for insheader (index 0 is
    above it), so positions computed from the headers we saw move down by one; Sendmail shows
    its Received: to the milter, so no offset there.
    """
    if position is HeaderPosition.END:
        return -1
    if position is HeaderPosition.START:
        return 0
    offset = 1 if mta_hides_own_received else 0
    if position is HeaderPosition.AFTER_RECEIVED:
        last = 0
        for i, (name, _v) in enumerate(headers):
            if name.lower() == "received":
                last = i + 1
        return last + offset
    # START_RFC: after the leading trace block (Received/Resent-*), RFC 5322 section 3.6
    first = 0
    for name, _v in headers:
        low = name.lower()
        if low == "received" or low.startswith("resent-") or low == "return-path":
            first += 1
        else:
            break
    return first + offset


def plan(edits: Edits, header_changes: Sequence[tuple[str, int, str]], quarantine: str | None,
         headers: Sequence[tuple[str, str]], mta_hides_own_received: bool) -> list[Op]:
    """The calls to make, in the fixed order."""
    ops: list[Op] = []
    if edits.sender is not None:
        ops.append(Op("chgfrom", (_bracket(edits.sender) if edits.sender else "<>", None)))
    for d in edits.rcpt_deletes:
        ops.append(Op("delrcpt", (d.address,)))
    for a in edits.rcpt_adds:
        ops.append(Op("addrcpt", (_bracket(a.address), list(a.params) or None)))
    for name, index, value in header_changes:
        ops.append(Op("chgheader", (name, index, value)))
    # Inserts at the same index land above each other, and an insert shifts every lower
    # header down: insert the lowest position first and, within one index, in reverse, so
    # every computed index stays valid and the policy's order is kept top to bottom.
    appends: list[Op] = []
    inserts: list[Op] = []
    for h in edits.header_adds:
        idx = header_index(h.position, headers, mta_hides_own_received)
        if idx < 0:
            appends.append(Op("addheader", (h.name, h.value, -1)))
        else:
            inserts.append(Op("addheader", (h.name, h.value, idx)))
    ops.extend(sorted(reversed(inserts), key=lambda op: -op.args[2]))
    ops.extend(appends)
    if quarantine:
        ops.append(Op("quarantine", (quarantine[:100],)))
    return ops


def execute(target: Any, ops: Sequence[Op]) -> None:
    """Call each op on the pymilter object (exceptions propagate to the callback guard).

    Text arguments pass through `safe_text`: 8-bit bytes from the envelope never make an edit
    raise (the bytes appear as \\xNN).
    """
    for op in ops:
        getattr(target, op.method)(*(safe_text(a) for a in op.args))
