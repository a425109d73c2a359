"""pymilter glue: libmilter callbacks in, `session.Session` calls, milter replies and edits out.

One `AclMilter` object per MTA connection (libmilter runs each connection in its own
thread). Every callback is guarded: an exception is logged with its traceback, the message
gets `settings.on_internal_error` (TEMPFAIL if even that cannot be determined) and the
service keeps running. Dry-run is applied inside the session (`Session._finish`), never here. What every
connection needs (runtime, listener, log format...) is a GlueConfig handed to `register`;
there is no module-global configuration.
"""

from __future__ import annotations

import logging
import socket
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import Milter
import milter

from ..runtime import Runtime
from ..internal import internal_response
from ..responses import CONTINUE, Action, EomResult, HeldRefusal, Response, outcome_word
from ..session import Session
from ..policy.needs import EVERYTHING
from . import edits as edit_plan
from . import logline, logsetup
from . import macros as mac
from . import negotiation, undecodable
from .held import GO_ON, HeldRefusals
from .reply import map_response
from .wiretext import safe_text

log = logging.getLogger("aclmilter")
msglog = logging.getLogger(logsetup.MESSAGE_LOGGER)

_NR_CONNECT, _NR_HELO, _NR_MAIL, _NR_RCPT, _NR_DATA = (negotiation.NO_REPLY_BIT[k] for k in (
    "connect", "helo", "mail", "rcpt", "predata"))
_NR_HDR, _NR_EOH, _NR_BODY = (negotiation.CONTENT_NO_REPLY_BIT[k] for k in ("header", "eoh", "body"))


@dataclass
class GlueConfig:
    """What every connection object needs; built once by the daemon before milter.main()."""

    runtime: Runtime
    listen_port: str = ""
    #: the MTA talks to us over a unix socket (changes what is negotiated: negotiation.wanted)
    unix_socket: bool = False
    session_factory: Callable[..., Any] = Session
    #: the message log line's format (service.logline.FORMATS)
    log_format: str = "logfmt"
    #: open-connection counter shared with a supervising master (liveconns), else None
    live: Any = None
    #: where the per-message log line goes (service.logsetup.MESSAGE_LOGGER)
    message_log: logging.Logger = msglog


def _internal_where() -> str:
    """The statement named for a refusal an internal error produced."""
    return "internal error"


def _family_name(family: int) -> str:
    return {int(socket.AF_INET): "inet", int(socket.AF_INET6): "inet6"}.get(family, "unix")


class AclMilter(Milter.Base):
    """One MTA connection: forwards every callback to a Session and maps its answers."""

    def __init__(self, config: GlueConfig) -> None:
        self.config = config
        self.session: Any = None
        self.snapshot: Any = None                # the policy snapshot negotiated with (pinned)
        self._protocol = 0                       # the SMFIP_* bits agreed with the MTA
        # refusals from steps the MTA did not wait for, given at the next step it waits for
        self.held = HeldRefusals()
        self.hides_own_received = True          # Postfix (macro v) unless Sendmail says otherwise
        self.in_txn = False
        self.eoh_sent = False
        self.last_refusal: tuple[str, Response] | None = None
        self._work_at_data = True               # until negotiated: the session runs at DATA

    # ---- negotiation -------------------------------------------------------------------------
    def negotiate(self, opts: list[int]) -> int:
        """Keep every offered action, ask for the macros, and only the steps the policy uses."""
        actions, offered, _f1, _f2 = opts
        self._actions = actions
        if actions & milter.SETSYMLIST:
            for stage, names in mac.SYMLISTS.items():
                # pymilter 1.0.5's Base.setsymlist hands bytes to a C function wanting str
                try:
                    self._ctx.setsymlist(stage, names)
                except Exception:  # noqa: BLE001 - without the list the MTA sends its defaults
                    log.warning("setsymlist for stage %d failed:\n%s", stage, traceback.format_exc())
        try:
            self.snapshot = self.config.runtime.current()
            needs = self.snapshot.needs
        except Exception:  # noqa: BLE001 - cannot tell what the policy needs: ask for everything
            log.error("policy needs unknown, negotiating every step:\n%s", traceback.format_exc())
            self.snapshot, needs = None, EVERYTHING
        self._protocol = offered & negotiation.wanted(needs, over_tcp=not self.config.unix_socket)
        # DATA is answered over TCP even when nothing runs there (negotiation.wanted)
        self._work_at_data = needs.work_at("predata")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("negotiated %s", negotiation.describe(self._protocol))
        opts[1] = self._protocol
        opts[2] = opts[3] = 0
        return milter.CONTINUE

    # ---- helpers -----------------------------------------------------------------------------
    def _new_session(self) -> Any:
        config = self.config
        if self.snapshot is None:
            return config.session_factory(config.runtime, listen_port=config.listen_port)
        return config.session_factory(config.runtime, listen_port=config.listen_port, snapshot=self.snapshot)

    def _internal(self, where: str) -> Response:
        """Answer for an exception that escaped the session (logged with traceback)."""
        log.error("internal error in the %s callback:\n%s", where, traceback.format_exc())
        try:
            snap = self.config.runtime.current()
            if snap.services.metrics is not None:
                snap.services.metrics.internal_error(where)
            mode = snap.policy.settings.get("on_internal_error", "tempfail")
        except Exception:  # noqa: BLE001 - fall back to the safe answer
            mode = "tempfail"
        return internal_response(mode)

    def _answer(self, stage: str, response: Response, at_eom: bool = False) -> int:
        mr = map_response(response, at_eom)
        if response.action in (Action.REJECT, Action.TEMPFAIL, Action.DISCARD):
            self.last_refusal = (stage, response)
        if mr.setreply:
            try:
                self.setreply(*(safe_text(a) for a in mr.setreply))
            except Exception:  # noqa: BLE001 - a bad reply text must not lose the verdict
                log.error("setreply%r failed:\n%s", mr.setreply, traceback.format_exc())
        if response.drop:
            log.info("dropping the connection after %s: %s", stage, mr.setreply)
        return mr.rc

    def _metrics(self) -> Any:
        """The metrics of this connection's services (None outside the daemon)."""
        services = getattr(self.session, "services", None)
        return getattr(services, "metrics", None)

    def _reply(self, stage: str, response: Response, no_reply_bit: int, failed: bool = False) -> int:
        """The return code for one step before EOM, from the session's (or the guard's) response.

        When the MTA does not wait for this step's answer, a refusal (its ACL cannot refuse by
        design, so only a deferral, an expansion error or an internal error produces one) is
        held and given at the next step it waits for (service/held.py), so nothing is accepted
        that should have been refused.
        """
        if response.action is Action.CONTINUE:  # the common cases: nothing to map or remember
            if self._protocol & no_reply_bit:
                return milter.NOREPLY
            if self.held.empty:
                return milter.CONTINUE
        answer = self.held.step(stage, response, not self._protocol & no_reply_bit,
                                _internal_where if failed else self._refusal_where)
        if answer is None:
            return milter.NOREPLY
        if answer is GO_ON:
            return milter.CONTINUE              # the common case: nothing to map or remember
        if answer.held and stage == "rcpt":
            self.session.refuse_last_recipient(answer.response.action)
        return self._answer(answer.stage, answer.response)

    def _failed(self, stage: str, no_reply_bit: int) -> int:
        """An exception escaped a step's work: log it, answer per on_internal_error."""
        return self._reply(stage, self._internal(stage), no_reply_bit, failed=True)

    def _refusal_where(self) -> str:
        """The statement behind the session's latest refusal (file:line), for the log line."""
        refusal = getattr(self.session, "last_refusal", None)
        return refusal.where if refusal is not None else "-"

    # ---- callbacks ---------------------------------------------------------------------------
    # Each callback guards its own work (no closure, no extra layer: this is the per-message path).
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        try:
            macros = mac.collect(self._ctx.getsymval, mac.CONNECT)
            self.hides_own_received = macros.get("v", "Postfix").lower().startswith("postfix")
            if self.session is not None:       # second CONNECT (Postfix XCLIENT): start afresh
                self._end_transaction()
                self.session.close()
            self.session = self._new_session()
            self.held.new_connection()
            self.in_txn = False
            if isinstance(hostaddr, tuple):
                address, port = hostaddr[0], hostaddr[1]
            else:
                address, port = "", None
            response = self.session.connect(hostname, _family_name(family), address, port, macros)
        except Exception:  # noqa: BLE001
            return self._failed("connect", _NR_CONNECT)
        return self._reply("connect", response, _NR_CONNECT)

    def hello(self, hostname: str) -> int:
        try:
            self._end_transaction()            # HELO/EHLO starts afresh (RFC 5321 4.1.4)
            self.held.new_helo()               # ... and a new HELO is judged on its own
            response = self.session.helo(hostname, mac.collect(self._ctx.getsymval, mac.HELO))
        except Exception:  # noqa: BLE001
            return self._failed("helo", _NR_HELO)
        return self._reply("helo", response, _NR_HELO)

    def envfrom(self, sender: str, *params: str) -> int:
        try:
            self._end_transaction()
            self.held.new_transaction()
            self.in_txn, self.last_refusal, self.eoh_sent = True, None, False
            response = self.session.mail(sender, params, mac.collect(self._ctx.getsymval, mac.MAIL))
        except Exception:  # noqa: BLE001
            return self._failed("mail", _NR_MAIL)
        return self._reply("mail", response, _NR_MAIL)

    def envrcpt(self, rcpt: str, *params: str) -> int:
        try:
            response = self.session.rcpt(rcpt, params, mac.collect(self._ctx.getsymval, mac.RCPT))
        except Exception:  # noqa: BLE001
            return self._failed("rcpt", _NR_RCPT)
        return self._reply("rcpt", response, _NR_RCPT)

    def data(self) -> int:
        if not self._work_at_data:
            # No predata ACL and nothing to refuse: the session is not called (the queue id
            # comes at EOM); a refusal held from an unanswered step is still given here.
            return self._reply("predata", CONTINUE, _NR_DATA)
        try:
            response = self.session.data(mac.collect(self._ctx.getsymval, mac.DATA))
        except Exception:  # noqa: BLE001
            return self._failed("predata", _NR_DATA)
        return self._reply("predata", response, _NR_DATA)

    def header(self, name: str, value: str) -> int:
        try:
            response = self.session.header(name, value)
        except Exception:  # noqa: BLE001
            return self._failed("header", _NR_HDR)
        return self._reply("header", response, _NR_HDR)

    def _end_of_headers(self) -> Response:
        if self.eoh_sent:
            return Response(Action.CONTINUE)
        self.eoh_sent = True
        return self.session.eoh()

    def eoh(self) -> int:
        """Only called by an MTA that ignores P_NOEOH."""
        try:
            response = self._end_of_headers()
        except Exception:  # noqa: BLE001
            return self._failed("eoh", _NR_EOH)
        return self._reply("eoh", response, _NR_EOH)

    def body(self, chunk: bytes) -> int:
        try:
            response = self._end_of_headers()
            if response.action is Action.CONTINUE:
                response = self.session.body(chunk)
        except Exception:  # noqa: BLE001
            return self._failed("body", _NR_BODY)
        return self._reply("body", response, _NR_BODY)

    def eom(self) -> int:
        try:
            eoh = self._end_of_headers()
            if eoh.action is not Action.CONTINUE:
                self.held.hold(HeldRefusal("eoh", eoh, self._refusal_where()))
            held = self.held.current()
            result: EomResult = self.session.eom(mac.collect(self._ctx.getsymval, mac.EOM), held)
            response = result.response
            if held is None and response.action in (Action.CONTINUE, Action.ACCEPT):
                headers = self.session.txn.headers if self.session.txn is not None else []
                ops = edit_plan.plan(result.edits, result.header_changes, result.quarantine, headers,
                                     self.hides_own_received)
                edit_plan.execute(self, ops)
            logline.finish(self.config.message_log, result.summary, self._metrics(), self.config.log_format)
            self.in_txn = False
            return self._answer("eom", response, at_eom=True)
        except Exception:  # noqa: BLE001
            self.in_txn = False
            return self._answer("eom", self._internal("eom"), at_eom=True)

    def undecodable(self, raw: bytes) -> bool:
        """pymilter could not decode `raw` for a HELO (or connect) callback: run that step now.

        Called from `undecodable`'s excepthook in this connection's thread. Which step failed
        follows from where the connection is: no session yet -> connect. Otherwise it was a
        HELO or a header *name* (the only other value pymilter decodes strictly; never 8-bit
        from Postfix). Headers come after RCPT, whose `{rcpt_addr}` macro every MTA sends and
        libmilter keeps until the next HELO or MAIL; libmilter clears it when a HELO arrives,
        before our callback. So `{rcpt_addr}` present -> a header (left to pymilter's report,
        the field is skipped); absent -> HELO. pymilter has answered CONTINUE already, so the
        step runs as a no-reply step: a refusal is held for the next answer.
        Returns False when the value is left to pymilter's error report.
        """
        text = raw.decode("utf-8", "surrogateescape")
        if self.session is None:
            step, bit = "connect", _NR_CONNECT
        elif self._ctx.getsymval("{rcpt_addr}") is None:
            step, bit = "helo", _NR_HELO
        else:
            return False
        log.info("%s value is not UTF-8 (%r): running the %s step with it", step,
                 text.encode("utf-8", "surrogateescape")[:80], step)
        saved = self._protocol
        self._protocol |= bit
        try:
            if step == "connect":
                self.connect(text, 0, None)
            else:
                self.hello(text)
        finally:
            self._protocol = saved
        return True

    def _end_transaction(self) -> None:
        """Forget the current transaction; one that never reached EOM is logged first.

        Called where the next thing the MTA does shows the transaction is over (HELO, MAIL, a
        second CONNECT, close) instead of from libmilter's abort callback: Postfix sends ABORT
        after every message (twice when the session ends), and an unregistered callback costs
        no Python call and no GIL hand-over.
        """
        if self.session is None:
            return
        if self.in_txn:
            self._log_unfinished()
        self.in_txn = False
        self.session.abort()

    def _log_unfinished(self) -> None:
        """A transaction that ended before EOM (refused RCPTs/DATA, RSET): log it once."""
        rec = dict(self.session.log_record("", getattr(self.session, "last_refusal", None)))
        if self.last_refusal is not None:
            stage, resp = self.last_refusal
            rec["decision"] = f"{outcome_word(resp)}_at_{stage}"
        else:
            rec["decision"] = "aborted"
        logline.finish(self.config.message_log, rec, self._metrics(), self.config.log_format)

    def close(self) -> int:
        try:
            if self.session is not None:
                self._end_transaction()
                self.session.close()
        except Exception:  # noqa: BLE001
            self._internal("close")
        finally:
            self.session = None
        return milter.CONTINUE


# ---- registration with libmilter (one table, as libmilter has one) --------------------------
def _decode(values: tuple[bytes, ...]) -> list[str]:
    return [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v for v in values]


def register(name: str, config: GlueConfig, lib: Any = milter) -> None:
    """Install the callbacks in libmilter (`lib`: the pymilter `milter` module; call once,
    before opensocket/main). Every connection object gets `config`.

    Each callback finds its connection object with `ctx.getpriv()` inline: one Python call
    fewer per callback than a helper function."""
    def new_connection(ctx: Any) -> AclMilter:
        m = AclMilter(config)
        m._setctx(ctx)
        undecodable.bind(m)
        return m

    def negotiate(ctx: Any, opts: list[int]) -> int:
        m = new_connection(ctx)
        if config.live is not None:
            config.live.opened()
        return m.negotiate(opts)

    def connect(ctx: Any, hostname: str, family: int, hostaddr: Any) -> int:
        m = ctx.getpriv()
        if m is None:            # MTA without negotiation (very old): build the object here
            m = new_connection(ctx)
        return m.connect(hostname, family, hostaddr)

    def close(ctx: Any) -> int:
        m = ctx.getpriv()
        if m is None:
            return milter.CONTINUE
        try:
            return m.close()
        finally:
            m._setctx(None)
            if config.live is not None:
                config.live.closed()

    lib.set_connect_callback(connect)
    lib.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    lib.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom(*_decode(b)))
    lib.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt(*_decode(b)))
    lib.set_header_callback(lambda ctx, f, v: ctx.getpriv().header(
        f, v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v))
    lib.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    lib.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    lib.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    # No abort callback: see AclMilter._end_transaction.
    lib.set_close_callback(close)
    # An exception raised inside pymilter's C layer (before our guards run: e.g. a header
    # *name* that is not UTF-8, which Postfix never sends) would answer TEMPFAIL on a
    # no-reply step and desynchronise libmilter; skipping that one callback is the safe
    # choice. pymilter prints the traceback to stderr.
    lib.set_exception_policy(milter.CONTINUE)
    undecodable.install()     # ... except an undecodable HELO/hostname: that step still runs
    lib.register(name, data=lambda ctx: ctx.getpriv().data(), unknown=None, negotiate=negotiate)
