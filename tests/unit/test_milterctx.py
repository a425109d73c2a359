"""The enforcing fake libmilter context (tests/harness/milterctx.py) refuses what libmilter refuses."""

from __future__ import annotations

from typing import Any

import Milter
import milter
import pytest

from tests.harness.milterctx import FakeCtx, MtaDriver


class Editing(Milter.Base):
    """A milter that makes the edits it is told to, from whichever callback runs."""

    def __init__(self, edits: list[tuple[str, tuple]] | None = None, actions: int = milter.CURR_ACTS) -> None:
        self.edits = edits or []
        self.want = actions

    def _do(self) -> int:
        for name, args in self.edits:
            getattr(self._ctx, name)(*args)
        return milter.CONTINUE

    def negotiate(self, opts: list[int]) -> int:
        opts[0] &= self.want
        return milter.CONTINUE

    def connect(self, *a: Any) -> int: return self._do()
    def envrcpt(self, *a: Any) -> int: return self._do()
    def eom(self) -> int: return self._do()
    def close(self) -> int: return milter.CONTINUE


def _driver(edits: list[tuple[str, tuple]], actions: int = milter.CURR_ACTS) -> tuple[MtaDriver, FakeCtx]:
    ctx = FakeCtx()
    obj = MtaDriver(Editing(edits, actions), ctx)
    obj.negotiate([milter.CURR_ACTS, 0, 0, 0])
    return obj, ctx


EDITS = [("addheader", ("X-A", "1", -1)), ("chgheader", ("X-A", 1, "")), ("addrcpt", ("<a@b>",)),
         ("delrcpt", ("<a@b>",)), ("chgfrom", ("<a@b>",)), ("quarantine", ("why",)), ("replacebody", (b"x",))]


@pytest.mark.parametrize("edit", EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_is_allowed_at_eom(edit: tuple[str, tuple]) -> None:
    obj, ctx = _driver([edit])
    obj.eom()
    assert ctx.calls == [(edit[0], *edit[1], *((None,) if edit[0] in ("addrcpt", "chgfrom") else ()))]
    assert ctx.violations == []


@pytest.mark.parametrize("edit", EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_before_eom_is_refused(edit: tuple[str, tuple]) -> None:
    obj, ctx = _driver([edit])
    with pytest.raises(milter.error, match="only from eom"):
        obj.envrcpt("<x@y>")
    assert ctx.calls == [] and len(ctx.violations) == 1


def test_an_edit_outside_any_callback_is_refused() -> None:
    _obj, ctx = _driver([])
    with pytest.raises(milter.error):
        ctx.addheader("X-A", "1")


def test_an_edit_whose_action_was_not_negotiated_is_refused() -> None:
    obj, ctx = _driver([("delrcpt", ("<a@b>",))], actions=milter.ADDHDRS)
    with pytest.raises(milter.error, match="not negotiated"):
        obj.eom()
    obj, ctx = _driver([("addrcpt", ("<a@b>", "NOTIFY=NEVER"))], actions=milter.ADDRCPT)
    with pytest.raises(milter.error, match="not negotiated"):     # parameters need ADDRCPT_PAR
        obj.eom()


def test_calls_after_close_are_refused() -> None:
    obj, ctx = _driver([("addheader", ("X-A", "1", -1))])
    obj.close()
    with pytest.raises(milter.error, match="after close"):
        ctx.setreply("550", "5.7.1", "no")
    with pytest.raises(milter.error, match="after close"):
        obj.eom()
    assert ctx.calls == []


def test_setsymlist_only_while_negotiating() -> None:
    _obj, ctx = _driver([])
    with pytest.raises(milter.error, match="only during negotiate"):
        ctx.setsymlist(milter.M_CONNECT, "{client_addr}")
