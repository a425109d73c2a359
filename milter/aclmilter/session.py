"""Sans-I/O session: milter callbacks in, engine runs, responses and EOM edits out.

The pymilter glue (service/) and the dry run (`aclmilter test`) both drive this class, so the
dry run runs exactly what the service runs. Nothing here imports pymilter or a feature.

This module is the lifecycle: scopes, callbacks in order, the features' command hooks. Its
other jobs are units of their own: responses.py (decision → response mapping), monitor.py
(monitor mode), internal.py (internal-error policy), eom.py (end of message with the
deliver stage), msglog.py (the message log record).

Scopes: the Connection lives from connect to close (a second connect, e.g. after XCLIENT,
starts a new one); the Transaction is rebuilt at MAIL and dropped at abort/RSET.
Monitor mode is applied in exactly one place: `_finish()`, which every response passes through.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import early, engine, eom, events
from .actions import Decision, Edits, Reply, apply_header_removals, clean_line
from .context import EvalContext
from .identity import derive_identity
from .internal import internal_error, internal_response  # noqa: F401 - internal_response re-exported
from .mode import Mode
from .monitor import Monitor
from .msglog import message_record
from .outcome import Result
from .registry import TABLES
from .replies import INTERNAL_TEMPFAIL
from .responses import (CONTINUE, Action, EomResult, HeldRefusal, Response,
                        for_decision, outcome_word)
from .runtime import Runtime, Snapshot
from .stages import ORDERED, Stage
from .state import Connection, Recipient, Transaction

log = logging.getLogger("aclmilter")


@dataclass
class StageRecord:
    """What happened at one stage (for the dry run and the message log line)."""

    stage: str
    decision: str
    where: str
    reply: str | None
    log_message: str | None
    trace: list[dict]
    log_lines: list[str]
    recipient: str | None = None
    variables: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


#: The decision of a stage the policy leaves out (what engine.run returns for it).
_NO_ACL = {stage: Decision(Result.OK, where="no ACL", stage=stage) for stage in ORDERED}

#: A non-empty event_action result at tcp:connect / smtp:connect (events.py): refuse and hang up.
EVENT_REFUSED = Response(Action.REJECT, Reply(554, "5.7.1", ("Connection refused",)), drop=True)
#: Refusals reported to event_action: stage -> (event on 5xx, event on 4xx).
_REFUSAL_EVENTS = {"rcpt": ("msg:rcpt:reject", "msg:rcpt:defer"), "mail": ("msg:reject", "msg:defer"),
                   "predata": ("msg:reject", "msg:defer"), "data": ("msg:reject", "msg:defer")}


def _callback(stage: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Wrap a pre-EOM callback: time it, and turn any exception into on_internal_error."""
    def wrap(fn: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(fn)
        def run(self: "Session", *args: Any, **kwargs: Any) -> Response:
            started = self._clock()
            try:
                return fn(self, *args, **kwargs)
            except Exception:  # noqa: BLE001 - one bad message must never kill the service
                return self._finish(self._internal_error(stage), stage, "internal error")
            finally:
                if started:                     # no metrics, no clock read and no call here
                    self._timed(stage, started)
        return run
    return wrap


class Session:
    """One MTA connection."""

    def __init__(self, runtime: Runtime, *, trace: bool = False, listen_port: str = "",
                 simulate: bool | None = None, snapshot: Snapshot | None = None) -> None:
        self.runtime = runtime
        # The service pins the snapshot it negotiated the milter steps with: a reload must not
        # hand this connection a policy that needs steps the MTA was told to skip.
        self.pinned = snapshot
        self._trace, self._simulate = trace, simulate     # what this session asked for (mode.Mode)
        self.snapshot = snapshot or runtime.current()
        self.conn = Connection()
        self.txn: Transaction | None = None
        self.records: list[StageRecord] = []
        self.listen_port = listen_port
        self.final: dict | None = None
        self.last_refusal: Decision | None = None   # the transaction's latest non-accept decision
        # monitor mode: the first refusal not given (connection and transaction)
        self.monitor = Monitor()
        # The statement (file:line) of the latest ACL that ran in this transaction: the log
        # line's `where` when the last stage had no ACL of its own.
        self.deciding = ""
        self.early: early.MessageEarly | None = None   # this transaction's early DNS lookups

    # ---- plumbing --------------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        """The (policy, services) pair this connection works with."""
        return self._snapshot

    @snapshot.setter
    def snapshot(self, snap: Snapshot) -> None:
        # policy, services and mode follow from it and are read many times per message:
        # plain attributes, kept in step here (the only place the snapshot changes)
        self._snapshot = snap
        self.policy = snap.policy
        self.services = snap.services
        self.mode: Mode = self.runtime.mode_for(snap, trace=self._trace, simulate=self._simulate)
        self._hooked = snap.policy.hooked_commands

    def _ctx(self, stage: Stage, rcpt: Recipient | None = None, command: str = "") -> EvalContext:
        return EvalContext(self.conn, self.txn, stage, self.services, self.policy, rcpt,
                           smtp_command=command, mode=self.mode)

    def _macros(self, macros: Mapping[str, str] | None) -> None:
        if macros:
            for k, v in macros.items():
                if v is not None:
                    self.conn.macros[k] = v
            if self.txn is not None and macros.get("i"):
                self.txn.queue_id = macros["i"]
            if macros.get("{auth_authen}"):
                self.conn.auth_authen = macros["{auth_authen}"]
                self.conn.auth_type = macros.get("{auth_type}", "")
            if macros.get("{cipher}"):
                self.conn.tls_cipher = macros["{cipher}"]
                self.conn.tls_version = macros.get("{tls_version}", "")

    def _run(self, stage: Stage, rcpt: Recipient | None = None, command: str = "") -> Decision:
        acl = self.policy.stage_acls.get(stage)
        if acl is None and not self.mode.trace:
            return _NO_ACL[stage]      # a stage left out accepts; nothing to evaluate or trace
        ctx = self._ctx(stage, rcpt, command)
        decision = engine.run(ctx, acl)
        if acl is not None:
            self.deciding = decision.where
        if decision.result is not Result.OK:
            self.last_refusal = decision       # names the statement in an unfinished message's log line
        if ctx.log_lines:
            self._flush_log(ctx, stage.key)
        if self.mode.trace:
            self._record(stage, decision, ctx, rcpt)
        return decision

    def _record(self, stage: Stage, decision: Decision, ctx: EvalContext, rcpt: Recipient | None) -> None:
        """Keep what one stage did for the dry run (the daemon keeps only the deciding statement)."""
        rec = StageRecord(stage.key, decision.result.value, decision.where,
                          decision.reply.text() if decision.reply else None, decision.log_message,
                          [t.as_dict() for t in ctx.trace], list(ctx.log_lines),
                          rcpt.address if rcpt else None, self.variables(ctx))
        self.records.append(rec)

    def variables(self, ctx: EvalContext) -> dict[str, str]:
        """Every registered variable's value now (errors become ""), plus acl_c/acl_m.

        Only results already computed are shown: a check no ACL has used so far is not run
        for its variables (they are empty), so showing them never sends a query."""
        ctx.observe_only = True
        out: dict[str, str] = {}
        for name in sorted(TABLES.variables):
            try:
                out[name] = ctx.var(name)
            except Exception:  # noqa: BLE001 - a variable that cannot be read is shown empty
                out[name] = ""
        out.update(self.conn.acl_c)
        if self.txn is not None:
            out.update(self.txn.acl_m)
        return out

    def _qid(self) -> str:
        return getattr(self.txn, "queue_id", "") or "-"

    def _finish(self, response: Response, stage: str, where: str | None = None,
                report: bool = True) -> Response:
        """The single place dry-run is applied: a would-be refusal is logged, mail goes on.

        `where` names the statement behind the refusal (default: the latest refusing one). A
        refusal given is reported to event_action (`report=False`: already reported). A
        drop marks the connection (the dry run sends nothing more)."""
        if response.drop:
            self.conn.drop = True
        if self.mode.monitor and response.action is not Action.CONTINUE:
            if where is None:
                where = self.last_refusal.where if self.last_refusal is not None else "-"
            self.monitor.withhold(self._qid(), response, stage, where)
            return CONTINUE
        if report and response.action is not Action.CONTINUE and stage in _REFUSAL_EVENTS:
            self._refusal_event(response, stage)
        return response

    def _event(self, name: str, data: str = "", stage: Stage = Stage.CONNECT,
               rcpt: Recipient | None = None) -> str:
        """Run settings.event_action for one event (events.py); "" when none is set, and in
        `aclmilter test`, which writes nothing to shared state (an event action writes)."""
        action = self.policy.settings.get("event_action")
        if action is None or self.mode.simulate:
            return ""
        return events.fire(self._ctx(stage, rcpt), action, name, data)

    def _refusal_event(self, response: Response, stage: str) -> None:
        """msg:rcpt:reject/defer or msg:reject/defer for a refusal actually given."""
        if response.action not in (Action.REJECT, Action.TEMPFAIL):
            return
        rcpt = self.txn.recipients[-1] if stage == "rcpt" and self.txn and self.txn.recipients else None
        name = _REFUSAL_EVENTS[stage][response.action is Action.TEMPFAIL]
        self._event(name, response.reply.text() if response.reply else "",
                    Stage.RCPT if rcpt is not None else Stage.DATA, rcpt)

    def _internal_error(self, where: str) -> Response:
        """An exception escaped: log it with its traceback and answer per on_internal_error."""
        return internal_error(self._qid(), where, self.policy.settings, self.services.metrics)

    def _clock(self) -> float:
        """Start time of a callback when there are metrics to feed, else 0.0 (no clock read)."""
        return time.monotonic() if self.services.metrics is not None else 0.0

    def _timed(self, stage: str, started: float) -> None:
        """Record a callback's latency (started from `_clock`; 0.0 means not timed)."""
        if started:
            self.services.metrics.callback_latency(stage, time.monotonic() - started)

    def _command_hooks(self, command: str, stage: Stage) -> tuple[Response, str] | None:
        """Run the features' hooks of `command` (registry.command_hook) before its ACL.

        Returns None to go on, or (the refusal, the refusing hook's name) for the first hook
        that refuses the command; later hooks do not run."""
        hooks = self.policy.command_hooks(command)
        if not hooks:
            return None
        ctx = self._ctx(stage, command=command)
        try:
            for hook in hooks:
                reply = hook.run(ctx)
                if reply is not None:
                    return Response(Action.REJECT, reply), hook.name
            return None
        finally:
            if ctx.log_lines:
                self._flush_log(ctx, f"{command} hooks")

    def _refused_by_hooks(self, command: str, stage: Stage) -> tuple[Response, str] | None:
        """A feature hook's refusal of `command` as given to the MTA, with the hook's name; None
        to go on (no hook refused, or monitor mode, which only notes the refusal: the step then
        runs as usual)."""
        if command not in self._hooked:
            return None
        refused = self._command_hooks(command, stage)
        if refused is None:
            return None
        response = self._finish(refused[0], command, refused[1])
        return None if response is CONTINUE else (response, refused[1])

    # ---- callbacks -------------------------------------------------------------------------
    @_callback("connect")
    def connect(self, hostname: str, family: str, address: str, port: Any,
                macros: Mapping[str, str] | None = None) -> Response:
        """New SMTP connection (also after XCLIENT): fresh Connection, then the connect ACL."""
        self.snapshot = self.pinned or self.runtime.current()
        if self.txn is not None:
            self.txn.close()
        self._end_early()
        self.txn = None
        self.conn = Connection(hostname=hostname)
        self.monitor.new_connection()
        settings = self.policy.settings
        self.conn.client = derive_identity(hostname, address if family != "unix" else "", port, macros or {})
        self.conn.listen_port = self.listen_port
        self._macros(macros)
        if (refused := self._refused_by_hooks("connect", Stage.CONNECT)) is not None:
            return refused[0]
        events_on = settings.get("event_action") is not None      # no call per connection otherwise
        if events_on and self._event("tcp:connect"):
            return self._finish(EVENT_REFUSED, "connect")
        decision = self._run(Stage.CONNECT, command="connect")
        response = for_decision(decision)
        if events_on and response is CONTINUE and self._event("smtp:connect"):
            response = EVENT_REFUSED
        return self._finish(response, "connect")

    @_callback("helo")
    def helo(self, name: str, macros: Mapping[str, str] | None = None) -> Response:
        """HELO/EHLO: the helo ACL; a deny clears $sender_helo_name (Exim)."""
        self._macros(macros)
        if (refused := self._refused_by_hooks("helo", Stage.HELO)) is not None:
            return refused[0]
        self.conn.helo = clean_line(name or "").strip()
        decision = self._run(Stage.HELO, command="helo")
        if decision.result is not Result.OK:
            self.conn.helo = ""
        return self._finish(for_decision(decision), "helo")

    @_callback("mail")
    def mail(self, sender: str, params: list[str] | tuple[str, ...] = (),
             macros: Mapping[str, str] | None = None) -> Response:
        """MAIL FROM: a new transaction, then the mail ACL (discard there discards the message)."""
        if self.txn is not None:
            self.txn.close()
        self._end_early()
        self.last_refusal = None
        self.monitor.new_transaction()
        self.deciding = ""
        self.txn = Transaction(sender=_strip_brackets(sender), sender_params=tuple(params))
        self.txn.edits = Edits()
        self.txn.body.threshold = int(self.policy.settings.get("body_spool_threshold") or (1 << 20))
        for p in params:
            if p.upper().startswith("SIZE="):
                try:
                    self.txn.size_param = int(p[5:])
                except ValueError:
                    pass
        self._macros(macros)
        self.conn.message_count += 1
        if self.snapshot.needs.early:
            self.early = early.for_message(self.services, self.snapshot.needs.early, self.txn.sender,
                                           self.conn.helo)
        if (refused := self._refused_by_hooks("mail", Stage.MAIL)) is not None:
            return refused[0]
        decision = self._run(Stage.MAIL, command="mail")
        if decision.result is Result.DISCARD:
            if self.mode.monitor:
                self.monitor.note("discard", "mail", decision.where)
            else:
                self.txn.discard_all = True
        return self._finish(for_decision(decision), "mail")

    @_callback("rcpt")
    def rcpt(self, rcpt: str, params: list[str] | tuple[str, ...] = (),
             macros: Mapping[str, str] | None = None) -> Response:
        """RCPT TO: the rcpt ACL for this recipient (skipped after a MAIL discard)."""
        self._macros(macros)
        if self.txn is None:   # defensive: an MTA always sends MAIL first
            self.txn = Transaction()
            self.txn.edits = Edits()
        if (refused := self._refused_by_hooks("rcpt", Stage.RCPT)) is not None:
            return refused[0]
        r = Recipient(_strip_brackets(rcpt), tuple(params), rcpt if rcpt.startswith("<") else f"<{rcpt}>")
        self.txn.recipients.append(r)
        if self.txn.discard_all:
            r.discarded = True
            return CONTINUE
        decision = self._run(Stage.RCPT, r, command="rcpt")
        response = for_decision(decision)
        if decision.result is Result.DISCARD:
            if self.mode.monitor:
                self.monitor.note("discard", "rcpt", decision.where)
            else:
                r.discarded = True
        elif response.action is Action.REJECT:
            r.accepted = False
            self.txn.rcpt_fail_count += 1
        elif response.action is Action.TEMPFAIL:
            r.accepted = False
            self.txn.rcpt_defer_count += 1
        final = self._finish(response, "rcpt")
        if final is CONTINUE and not r.accepted:
            r.accepted = True    # dry run: the MTA keeps the recipient
        return final

    def refuse_last_recipient(self, action: Action) -> None:
        """The MTA was told to refuse the latest recipient after all (a refusal held from an
        unanswered earlier step was given at its RCPT): it leaves the message, the log line
        and the accepted-recipient counts, as if this ACL had refused it."""
        txn = self.txn
        if txn is None or not txn.recipients or not txn.recipients[-1].accepted:
            return
        txn.recipients[-1].accepted = False
        if action is Action.TEMPFAIL:
            txn.rcpt_defer_count += 1
        else:
            txn.rcpt_fail_count += 1

    @_callback("predata")
    def data(self, macros: Mapping[str, str] | None = None) -> Response:
        """DATA command: the predata ACL (discard is not allowed there -> ERROR, as Exim)."""
        self._macros(macros)
        if (refused := self._refused_by_hooks("predata", Stage.PREDATA)) is not None:
            return refused[0]
        decision = self._run(Stage.PREDATA, command="data")
        if decision.result is Result.DISCARD:
            decision = Decision(Result.ERROR, INTERNAL_TEMPFAIL,
                                "discard is not allowed in the predata ACL", decision.where, Stage.PREDATA)
        return self._finish(for_decision(decision), "predata")

    def header(self, name: str, value: str) -> Response:
        """One header as the MTA sent it (Postfix: value without the leading space)."""
        if self.txn is not None:
            self.txn.headers.append((name, value))
            if self.early is not None:
                self.early.header(name, value)
        return CONTINUE

    def eoh(self) -> Response:
        return CONTINUE

    def body(self, chunk: bytes) -> Response:
        """A body chunk: appended to the spool (memory up to the threshold, then a temp file)."""
        try:
            if self.txn is not None:
                self.txn.body.write(bytes(chunk))
            return CONTINUE
        except Exception:  # noqa: BLE001
            return self._finish(self._internal_error("body"), "body", "internal error")

    def eom(self, macros: Mapping[str, str] | None = None, held: HeldRefusal | None = None) -> EomResult:
        """End of message: data ACL, hooks, per-recipient deliver ACL, then the final edits.

        With `held` (a refusal from a step the MTA did not wait for) the message is refused
        with it instead, logged as refused at that step, and nothing else runs: the message
        would never have got this far had the MTA waited.
        """
        started = self._clock()
        try:
            self._macros(macros)
            if held is not None:
                return self._eom_result(self._finish(held.response, held.stage, report=False), Edits(), None,
                                        f"{held.response.action.value}_at_{held.stage}", where=held.where)
            return eom.run(self)
        except Exception:  # noqa: BLE001
            internal = self._internal_error("eom")
            response = self._finish(internal, "eom", "internal error")
            try:
                summary = self.log_record(outcome_word(internal), None, "internal error")
            except Exception:  # noqa: BLE001 - the state itself may be what broke
                summary = {"queue_id": self._qid(), "decision": outcome_word(internal), "where": "internal error"}
            return EomResult(response, Edits(), [], None, summary)
        finally:
            self._end_early()
            self._timed("eom", started)

    def _flush_log(self, ctx: EvalContext, what: str) -> None:
        for line in ctx.log_lines:
            log.info("%s %s: %s", self._qid(), what, line)

    def _eom_result(self, response: Response, edits: Edits, decision: Decision | None, outcome: str,
                    where: str | None = None) -> EomResult:
        txn = self.txn
        if self.mode.monitor:
            edits = self.monitor.edits(edits, self.policy.settings.get("dry_run_header"))
        changes = [(n, i, "") for n, i in apply_header_removals(txn.headers if txn else [],
                                                                edits.header_removes)]
        summary = self.log_record(outcome, decision, where)
        if self.policy.settings.get("event_action") is not None:
            self._event("msg:complete", "accept" if response is CONTINUE else response.action.value, Stage.DATA)
        return EomResult(response, edits, changes, None if self.mode.monitor else edits.quarantine, summary)

    def abort(self) -> None:
        """RSET or a dropped transaction: forget the transaction, keep the connection."""
        if self.txn is not None:
            self.txn.close()
        self._end_early()
        self.txn = None

    def _end_early(self) -> None:
        """Nothing of a message outlives it: cancel its early DNS lookups still running."""
        if self.early is not None:
            self.early.close()
            self.early = None

    def close(self) -> None:
        """End of the SMTP connection."""
        self.abort()

    # ---- logging ---------------------------------------------------------------------------
    def log_record(self, outcome: str = "", decision: Decision | None = None, where: str | None = None) -> dict:
        """The one-line-per-message record: queue id, client, HELO, sender, recipients, decision.

        `where` (the deciding statement) defaults to the decision's; when that stage had no ACL,
        the statement of the latest ACL that ran in the transaction decided. `checks` holds a
        word per check that ran (summary.check_words), `prx` the PROXY peer."""
        where = where if where is not None else (decision.where if decision else "")
        if where == "no ACL" and self.deciding:
            where = self.deciding
        rec = message_record(self.conn, self.txn, self._qid(), outcome, where, self.mode.monitor)
        self.final = rec
        return rec


def _strip_brackets(addr: str) -> str:
    a = (addr or "").strip()
    if a.startswith("<") and a.endswith(">"):
        a = a[1:-1]
    return clean_line(a).strip()
