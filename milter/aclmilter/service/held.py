"""Refusals the MTA did not wait for, given at the next step it waits for (pure: no milter).

A step the MTA does not wait for (negotiated "no reply") cannot refuse by design; only a
deferral, an expansion error or an internal error there produces a refusal. It is held and
given at the next step the MTA waits for, so nothing is accepted that should have been
refused. Three holders, each forgotten at its own point:

- from connect: for the whole connection (a new connect clears it);
- from HELO: until the next HELO (which is judged on its own);
- from the transaction (MAIL on): until the next MAIL. The first one of a transaction wins.

The connection's holders come first when a refusal is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..responses import Action, HeldRefusal, Response


@dataclass(frozen=True)
class Answer:
    """What to tell the MTA for one step: `response` as the refusal of `stage`.

    `held` is True when it is a held refusal given now (at RCPT the MTA then refuses that
    recipient, which must leave the message: Session.refuse_last_recipient)."""

    stage: str
    response: Response
    held: bool = False


#: the step goes on and nothing is held (the common case: one shared object, no allocation)
GO_ON = Answer("", Response(Action.CONTINUE))


class HeldRefusals:
    """The held-refusal state machine of one MTA connection."""

    __slots__ = ("connect", "helo", "txn", "empty")

    def __init__(self) -> None:
        self.connect: HeldRefusal | None = None
        self.helo: HeldRefusal | None = None
        self.txn: HeldRefusal | None = None
        #: nothing is held (read on every callback, so a plain attribute, kept in step here)
        self.empty = True

    def _changed(self) -> None:
        self.empty = self.connect is None and self.helo is None and self.txn is None

    def new_connection(self) -> None:
        """A (new) connect: nothing held from before counts."""
        self.connect = self.helo = self.txn = None
        self.empty = True

    def new_helo(self) -> None:
        """A new HELO/EHLO is judged on its own (a refusal from connect stays)."""
        if self.helo is not None:
            self.helo = None
            self._changed()

    def new_transaction(self) -> None:
        """MAIL starts a transaction: a refusal held from the previous one is forgotten."""
        if self.txn is not None:
            self.txn = None
            self._changed()

    def current(self) -> HeldRefusal | None:
        """The refusal to give now, if any (connection first, then HELO, then transaction)."""
        return self.connect or self.helo or self.txn

    def hold(self, held: HeldRefusal) -> None:
        """Keep a refusal the MTA did not wait for (per holder; see the module doc)."""
        if held.stage == "connect":
            self.connect = self.connect or held
        elif held.stage == "helo":
            self.helo = held
        elif self.txn is None:
            self.txn = held
        self.empty = False

    def step(self, stage: str, response: Response, waited: bool, where: Callable[[], str]) -> Answer | None:
        """The answer for one step before EOM.

        Returns None when the MTA does not wait (`waited` False; a refusal is held, `where()`
        naming its statement); otherwise the step's own refusal, or a held refusal when the
        step itself goes on, or GO_ON.
        """
        if not waited:
            if response.action is not Action.CONTINUE:
                self.hold(HeldRefusal(stage, response, where()))
            return None
        if response.action is Action.CONTINUE:
            held = self.current()
            if held is None:
                return GO_ON
            return Answer(held.stage, held.response, held=True)
        return Answer(stage, response)
