"""A fake libmilter context that enforces the milter protocol, and a driver that plays the MTA.

`FakeCtx` stands where pymilter's C context stands under a `Milter.Base` object. Like
libmilter (and pymilter's own TestCtx) it refuses, with `milter.error`:

- a message edit (addheader, chgheader, addrcpt, delrcpt, chgfrom, replacebody,
  quarantine, progress) outside the end-of-message callback;
- an edit whose action was not negotiated (ADDHDRS, CHGHDRS, ADDRCPT / ADDRCPT_PAR, DELRCPT,
  CHGFROM, CHGBODY, QUARANTINE), and setsymlist outside negotiation or without SETSYMLIST;
- any call after the connection was closed.

Every refusal is also kept in `violations`, so a test fails even when the code under test
swallows the exception (fixtures assert `violations == []` at teardown).

`MtaDriver` wraps the milter object: calling a callback through it (`obj.eom()`) tells the
context which callback is running, as libmilter's dispatcher does; every other attribute is
the milter's own.
"""

from __future__ import annotations

from typing import Any

import milter

#: callback name -> the protocol stage libmilter is in while it runs.
CALLBACKS = ("negotiate", "connect", "hello", "envfrom", "envrcpt", "data", "header", "eoh", "body",
             "eom", "abort", "close", "unknown")
#: edit -> the action flag it needs.
EDIT_ACTIONS = {"addheader": milter.ADDHDRS, "chgheader": milter.CHGHDRS, "addrcpt": milter.ADDRCPT,
                "delrcpt": milter.DELRCPT, "chgfrom": milter.CHGFROM, "replacebody": milter.CHGBODY,
                "quarantine": milter.QUARANTINE, "progress": 0}


class FakeCtx:
    """Records every libmilter call (`calls`) and refuses those the protocol does not allow."""

    def __init__(self, macros: dict[str, str] | None = None) -> None:
        self.priv: Any = None
        self.macros = {"v": "Postfix 3.7", "i": "QID", **(macros or {})}
        self.calls: list[tuple] = []
        self.violations: list[str] = []
        self.stage = "idle"                 # the callback running now; "closed" after close
        self.actions: int | None = None     # action flags agreed in negotiate (None: not yet)

    # ---- protocol state (set by MtaDriver) ---------------------------------------------------
    def enter(self, callback: str) -> None:
        if self.stage == "closed":
            self._refuse(callback, "callback after close")
        self.stage = callback

    def leave(self, callback: str) -> None:
        self.stage = "closed" if callback == "close" else "idle"

    def _refuse(self, what: str, why: str) -> None:
        self.violations.append(f"{what}: {why}")
        raise milter.error(f"{what}: {why}")

    def _alive(self, what: str) -> None:
        if self.stage == "closed":
            self._refuse(what, "called after close")

    # ---- the libmilter context interface -----------------------------------------------------
    def setpriv(self, p: Any) -> None:
        self.priv = p

    def getpriv(self) -> Any:
        return self.priv

    def getsymval(self, name: str) -> str | None:
        self._alive("getsymval")
        return self.macros.get(name)

    def setreply(self, *args: Any) -> None:
        self._alive("setreply")
        self.calls.append(("setreply", *args))

    def setsymlist(self, stage: int, names: str) -> None:
        self._alive("setsymlist")
        if self.stage != "negotiate":
            self._refuse("setsymlist", f"only during negotiate, not {self.stage}")
        self.calls.append(("setsymlist", stage, names))

    def _edit(self, name: str, args: tuple, flag: int) -> None:
        self._alive(name)
        if self.stage != "eom":
            self._refuse(name, f"only from eom(), not from {self.stage}")
        if flag and (self.actions is None or not self.actions & flag):
            self._refuse(name, "action not negotiated")
        self.calls.append((name, *args))

    def addheader(self, field: str, value: str, idx: int = -1) -> None:
        self._edit("addheader", (field, value, idx), EDIT_ACTIONS["addheader"])

    def chgheader(self, field: str, idx: int, value: str) -> None:
        self._edit("chgheader", (field, idx, value), EDIT_ACTIONS["chgheader"])

    def addrcpt(self, rcpt: str, params: str | None = None) -> None:
        self._edit("addrcpt", (rcpt, params), milter.ADDRCPT_PAR if params else milter.ADDRCPT)

    def delrcpt(self, rcpt: str) -> None:
        self._edit("delrcpt", (rcpt,), EDIT_ACTIONS["delrcpt"])

    def chgfrom(self, sender: str, params: str | None = None) -> None:
        self._edit("chgfrom", (sender, params), EDIT_ACTIONS["chgfrom"])

    def replacebody(self, chunk: bytes) -> None:
        self._edit("replacebody", (chunk,), EDIT_ACTIONS["replacebody"])

    def quarantine(self, reason: str) -> None:
        self._edit("quarantine", (reason,), EDIT_ACTIONS["quarantine"])

    def progress(self) -> None:
        self._edit("progress", (), 0)


class MtaDriver:
    """Calls a milter's callbacks the way libmilter does, keeping `ctx` informed of the stage."""

    def __init__(self, obj: Any, ctx: FakeCtx) -> None:
        self.__dict__["_obj"] = obj
        self.__dict__["_fctx"] = ctx
        obj._setctx(ctx)

    def negotiate(self, opts: list[int]) -> Any:
        ctx = self._fctx
        ctx.enter("negotiate")
        try:
            return self._obj.negotiate(opts)
        finally:
            ctx.actions = opts[0]      # what the milter asked for, out of what was offered
            ctx.leave("negotiate")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if name not in CALLBACKS or not callable(attr):
            return attr
        ctx = self._fctx

        def callback(*args: Any, **kw: Any) -> Any:
            ctx.enter(name)
            try:
                return attr(*args, **kw)
            finally:
                ctx.leave(name)
        return callback

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._obj, name, value)
