"""Sans-I/O session: milter callbacks in, engine runs, responses and EOM edits out.

The pymilter glue (service/) and the dry run (`aclmilter test`) both drive this class, so the
dry run runs exactly what the service runs. Nothing here imports pymilter.

Scopes: the Connection lives from connect to close (a second connect, e.g. after XCLIENT,
starts a new one); the Transaction is rebuilt at MAIL and dropped at abort/RSET.
Dry-run is applied in exactly one place: `_finish()`, which every response passes through.
"""

from __future__ import annotations

import enum
import functools
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import early, engine, events, lists
from .actions import (Decision, Edits, HeaderAdd, HeaderPosition, Reply, apply_header_removals,
                      clean_line)
from .checks.proxy import derive_identity
from .context import EvalContext
from .outcome import Result
from .registry import TABLES
from .replies import INTERNAL_REJECT, INTERNAL_TEMPFAIL
from .runtime import Runtime, Snapshot
from .stages import ORDERED, Stage
from .summary import check_words
from .state import Connection, Recipient, Transaction

log = logging.getLogger("aclmilter")


class Action(enum.Enum):
    """What the MTA is told for one callback."""

    CONTINUE = "continue"
    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DISCARD = "discard"


@dataclass(frozen=True)
class Response:
    action: Action
    reply: Reply | None = None
    drop: bool = False          # Exim `drop`: the session must end after this reply


CONTINUE = Response(Action.CONTINUE)
_INTERNAL = {"accept": CONTINUE, "reject": Response(Action.REJECT, INTERNAL_REJECT)}
_INTERNAL_DEFAULT = Response(Action.TEMPFAIL, INTERNAL_TEMPFAIL)


def internal_response(mode: str) -> Response:
    """The answer for an internal error under `settings.on_internal_error` = `mode`
    (accept, reject, tempfail; anything else tempfails). Every guard uses this one."""
    return _INTERNAL.get(mode, _INTERNAL_DEFAULT)


@dataclass(frozen=True)
class HeldRefusal:
    """A refusal from a step the MTA did not wait for, given at the next step it waits for.

    `stage` is where it arose, `where` the statement (file:line) or "internal error".
    """

    stage: str
    response: Response
    where: str


@dataclass
class EomResult:
    response: Response
    edits: Edits
    header_changes: list[tuple[str, int, str]]   # (name, index, new value or "" to delete)
    quarantine: str | None
    summary: dict


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

PROXY_REFUSED = Reply(503, "5.7.0", ("Command refused, required Proxy negotiation failed",))
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

    def __init__(self, runtime: Runtime, *, record_variables: bool = False, listen_port: str = "",
                 simulate: bool | None = None, snapshot: Snapshot | None = None) -> None:
        self.runtime = runtime
        # The service pins the snapshot it negotiated the milter steps with: a reload must not
        # hand this connection a policy that needs steps the MTA was told to skip.
        self.pinned = snapshot
        self.snapshot = snapshot or runtime.current()
        self.conn = Connection()
        self.txn: Transaction | None = None
        self.records: list[StageRecord] = []
        self.record_variables = record_variables
        self.listen_port = listen_port
        self.final: dict | None = None
        self.last_refusal: Decision | None = None   # the transaction's latest non-accept decision
        # a simulation (runtime.simulate, or asked here): no side effects on shared state
        self.simulate = runtime.simulate if simulate is None else simulate
        self.writes = not self.simulate or runtime.update
        # Monitor mode (dry_run): the first refusal that was not given, as (action, stage, where),
        # for the connection (connect/HELO) and for the transaction (reset at MAIL).
        self.would_conn: tuple[str, str, str] | None = None
        self.would: tuple[str, str, str] | None = None
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
        # policy, services and dry_run follow from it and are read many times per message:
        # plain attributes, kept in step here (the only place the snapshot changes)
        self._snapshot = snap
        self.policy = snap.policy
        self.services = snap.services
        self.dry_run = self.runtime.dry_run_for(snap)

    def _ctx(self, stage: Stage, rcpt: Recipient | None = None, command: str = "") -> EvalContext:
        return EvalContext(self.conn, self.txn, stage, self.services, self.policy, rcpt,
                           smtp_command=command, dry_run=self.simulate, tracing=self.record_variables,
                           writes=self.writes)

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
        if acl is None and not self.record_variables:
            return _NO_ACL[stage]      # a stage left out accepts; nothing to evaluate or trace
        ctx = self._ctx(stage, rcpt, command)
        decision = engine.run(ctx, acl)
        if acl is not None:
            self.deciding = decision.where
        if decision.result is not Result.OK:
            self.last_refusal = decision       # names the statement in an unfinished message's log line
        if ctx.log_lines:
            self._flush_log(ctx, stage.key)
        if self.record_variables:
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

    def _response(self, decision: Decision, stage: Stage) -> Response:
        """Map a stage decision to the MTA response (before dry-run filtering)."""
        r = decision.result
        if r is Result.OK or r is Result.DISCARD:
            return CONTINUE
        if r is Result.FAIL:
            return Response(Action.REJECT, decision.reply)
        if r is Result.DROP:
            self.conn.drop = True
            return Response(Action.REJECT, decision.reply, drop=True)
        return Response(Action.TEMPFAIL, decision.reply)

    def _finish(self, response: Response, stage: str, where: str | None = None,
                report: bool = True) -> Response:
        """The single place dry-run is applied: a would-be refusal is logged, mail goes on.

        `where` names the statement behind the refusal (default: the latest refusing one). A
        refusal given is reported to event_action (`report=False`: already reported)."""
        if self.dry_run and response.action is not Action.CONTINUE:
            if where is None:
                where = self.last_refusal.where if self.last_refusal is not None else "-"
            log.info("%s dry-run: would %s at %s (%s): %s", self._qid(), response.action.value, stage,
                     where, response.reply.text() if response.reply else "")
            self._would(response.action.value, stage, where)
            return CONTINUE
        if report and response.action is not Action.CONTINUE and stage in _REFUSAL_EVENTS:
            self._refusal_event(response, stage)
        return response

    def _event(self, name: str, data: str = "", stage: Stage = Stage.CONNECT,
               rcpt: Recipient | None = None) -> str:
        """Run settings.event_action for one event (events.py); "" when none is set, and in
        `aclmilter test`, which writes nothing to shared state (an event action writes)."""
        action = self.policy.settings.get("event_action")
        if action is None or self.simulate:
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

    def _would(self, action: str, stage: str, where: str) -> None:
        """Remember the first refusal monitor mode did not give (named in the dry-run header)."""
        if stage in ("connect", "helo"):
            self.would_conn = self.would_conn or (action, stage, where)
        elif self.would is None:
            self.would = (action, stage, where)

    def _internal_error(self, where: str) -> Response:
        """An exception escaped: log it with its traceback and answer per on_internal_error."""
        log.error("%s internal error at %s:\n%s", self._qid(), where, traceback.format_exc())
        if self.services.metrics is not None:
            self.services.metrics.internal_error(where)
        return internal_response(self.policy.settings.get("on_internal_error", "tempfail"))

    def _clock(self) -> float:
        """Start time of a callback when there are metrics to feed, else 0.0 (no clock read)."""
        return time.monotonic() if self.services.metrics is not None else 0.0

    def _timed(self, stage: str, started: float) -> None:
        """Record a callback's latency (started from `_clock`; 0.0 means not timed)."""
        if started:
            self.services.metrics.callback_latency(stage, time.monotonic() - started)

    def _refused_by_proxy(self) -> Response | None:
        if self.conn.client.proxy_required_failed:
            return Response(Action.REJECT, PROXY_REFUSED)
        return None

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
        self.would_conn = None
        settings = self.policy.settings
        self.conn.client = derive_identity(hostname, address if family != "unix" else "", port,
                                           macros or {}, settings.get("proxy_listeners") or (),
                                           self.listen_port)
        self._macros(macros)
        required = settings.get("proxy_required_hosts")
        if required is not None and not self.conn.client.proxied:
            ctx = self._ctx(Stage.CONNECT)
            rc = lists.match(ctx, required, None)
            if rc is Result.OK:
                self.conn.client.proxy_required_failed = True
                log.warning("connection from %s (port %s) is in proxy_required_hosts but did not come "
                            "through a proxy listener: refusing every command",
                            self.conn.client.address, self.conn.client.local_port)
        events_on = settings.get("event_action") is not None      # no call per connection otherwise
        if events_on and self._event("tcp:connect"):
            return self._finish(EVENT_REFUSED, "connect")
        decision = self._run(Stage.CONNECT, command="connect")
        # A failed proxy negotiation is refused from HELO on, not here: a refusal at connect
        # makes Postfix send a 554 banner and still answer EHLO with 250, whereas Exim
        # answers every command but QUIT with 503.
        response = self._response(decision, Stage.CONNECT)
        if events_on and response is CONTINUE and self._event("smtp:connect"):
            response = EVENT_REFUSED
        return self._finish(response, "connect")

    @_callback("helo")
    def helo(self, name: str, macros: Mapping[str, str] | None = None) -> Response:
        """HELO/EHLO: the helo ACL; a deny clears $sender_helo_name (Exim)."""
        self._macros(macros)
        refused = self._refused_by_proxy()
        if refused is not None:
            return self._finish(refused, "helo", "proxy_required_hosts")
        self.conn.helo = clean_line(name or "").strip()
        decision = self._run(Stage.HELO, command="helo")
        if decision.result is not Result.OK:
            self.conn.helo = ""
        return self._finish(self._response(decision, Stage.HELO), "helo")

    @_callback("mail")
    def mail(self, sender: str, params: list[str] | tuple[str, ...] = (),
             macros: Mapping[str, str] | None = None) -> Response:
        """MAIL FROM: a new transaction, then the mail ACL (discard there discards the message)."""
        if self.txn is not None:
            self.txn.close()
        self._end_early()
        self.last_refusal = None
        self.would, self.deciding = None, ""
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
        refused = self._refused_by_proxy()
        if refused is not None:
            return self._finish(refused, "mail", "proxy_required_hosts")
        decision = self._run(Stage.MAIL, command="mail")
        if decision.result is Result.DISCARD:
            if self.dry_run:
                self._would("discard", "mail", decision.where)
            else:
                self.txn.discard_all = True
        return self._finish(self._response(decision, Stage.MAIL), "mail")

    @_callback("rcpt")
    def rcpt(self, rcpt: str, params: list[str] | tuple[str, ...] = (),
             macros: Mapping[str, str] | None = None) -> Response:
        """RCPT TO: the rcpt ACL for this recipient (skipped after a MAIL discard)."""
        self._macros(macros)
        if self.txn is None:   # defensive: an MTA always sends MAIL first
            self.txn = Transaction()
            self.txn.edits = Edits()
        refused = self._refused_by_proxy()
        if refused is not None:
            return self._finish(refused, "rcpt", "proxy_required_hosts")
        r = Recipient(_strip_brackets(rcpt), tuple(params), rcpt if rcpt.startswith("<") else f"<{rcpt}>")
        self.txn.recipients.append(r)
        if self.txn.discard_all:
            r.discarded = True
            return CONTINUE
        decision = self._run(Stage.RCPT, r, command="rcpt")
        response = self._response(decision, Stage.RCPT)
        if decision.result is Result.DISCARD:
            if self.dry_run:
                self._would("discard", "rcpt", decision.where)
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
        refused = self._refused_by_proxy()
        if refused is not None:
            return self._finish(refused, "predata", "proxy_required_hosts")
        decision = self._run(Stage.PREDATA, command="data")
        if decision.result is Result.DISCARD:
            decision = Decision(Result.ERROR, INTERNAL_TEMPFAIL,
                                "discard is not allowed in the predata ACL", decision.where, Stage.PREDATA)
        return self._finish(self._response(decision, Stage.PREDATA), "predata")

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
            return self._eom()
        except Exception:  # noqa: BLE001
            internal = self._internal_error("eom")
            response = self._finish(internal, "eom", "internal error")
            try:
                summary = self.log_record(_word(internal), None, "internal error")
            except Exception:  # noqa: BLE001 - the state itself may be what broke
                summary = {"queue_id": self._qid(), "decision": _word(internal), "where": "internal error"}
            return EomResult(response, Edits(), [], None, summary)
        finally:
            self._end_early()
            self._timed("eom", started)

    def _eom(self) -> EomResult:
        txn = self.txn
        if txn is None:
            txn = self.txn = Transaction()
            txn.edits = Edits()
        refused = self._refused_by_proxy()
        if refused is not None:
            return self._eom_result(self._finish(refused, "data", "proxy_required_hosts"), Edits(), None,
                                    "reject", where="proxy_required_hosts")
        edits: Edits = txn.edits
        kept = [r for r in txn.recipients if r.accepted and not r.discarded]
        for r in txn.recipients:
            if r.accepted and r.discarded:
                edits.delete_recipient(r.raw, "discarded at MAIL/RCPT")
        if not kept:
            log.info("%s all recipients discarded before DATA: message discarded", self._qid())
            return self._eom_result(self._finish(Response(Action.DISCARD), "data"), edits, None, "discard")
        decision = self._run(Stage.DATA, command="data")
        hook_decision = decision
        if self.dry_run and decision.result is not Result.OK:
            # Monitor mode: the hooks add their headers (A-R, X-DCC, ...) as for an accepted message
            hook_decision = Decision(Result.OK, where=decision.where, stage=decision.stage)
        data_hooks = self.policy.eom_hooks("after_data")
        if data_hooks:
            ctx = self._ctx(Stage.DATA)
            for hook in data_hooks:
                hook.run(ctx, hook_decision)
            self._flush_log(ctx, "data hooks")
        response = self._response(decision, Stage.DATA)
        if decision.result is Result.DISCARD:
            response = Response(Action.DISCARD)
        stage = "data"
        if response.action is not Action.CONTINUE and self.dry_run:
            # Monitor mode: note the refusal, then go on as if accepted, so the deliver ACL
            # and the verdict headers still run.
            response = self._finish(response, "data", decision.where)
        if response.action is Action.CONTINUE:
            response = self._deliver(kept, edits)
            if response.action is not Action.CONTINUE:
                stage = "deliver"
                if self.dry_run:
                    response = self._finish(response, stage)
            deliver_hooks = self.policy.eom_hooks("after_deliver")
            if response.action is Action.CONTINUE and deliver_hooks:
                # Only a message that will be delivered gets after_deliver work (verdict headers).
                dctx = self._ctx(Stage.DELIVER)
                for hook in deliver_hooks:
                    hook.run(dctx, hook_decision)
                self._flush_log(dctx, "deliver hooks")
        outcome = _word(response) + ("_at_deliver" if stage == "deliver" and response is not CONTINUE else "")
        return self._eom_result(self._finish(response, stage), edits, decision, outcome)

    def _deliver(self, kept: list[Recipient], edits: Edits) -> Response:
        """Run the deliver ACL per recipient: keep, delete (discard/deny/drop) or tempfail all."""
        if Stage.DELIVER not in self.policy.stage_acls:
            return CONTINUE
        remaining = 0
        for r in kept:
            decision = self._run(Stage.DELIVER, r, command="deliver")
            if decision.result is Result.OK:
                remaining += 1       # kept, or replaced by its `redirect` address
                r.delivered = True
            elif decision.result in (Result.DISCARD, Result.FAIL, Result.DROP):
                r.delivered = False
                edits.delete_recipient(r.raw, decision.where)
                log.info("%s recipient %s not delivered (%s at %s)", self._qid(), r.address,
                         decision.result.value, decision.where)
            else:
                return Response(Action.TEMPFAIL, decision.reply or INTERNAL_TEMPFAIL)
        if remaining == 0:
            log.info("%s no recipient left after the deliver ACL: message discarded", self._qid())
            return Response(Action.DISCARD)
        return CONTINUE

    def _flush_log(self, ctx: EvalContext, what: str) -> None:
        for line in ctx.log_lines:
            log.info("%s %s: %s", self._qid(), what, line)

    def _eom_result(self, response: Response, edits: Edits, decision: Decision | None, outcome: str,
                    where: str | None = None) -> EomResult:
        txn = self.txn
        if self.dry_run:
            edits = self._monitored(edits)
        changes = [(n, i, "") for n, i in apply_header_removals(txn.headers if txn else [],
                                                                edits.header_removes)]
        summary = self.log_record(outcome, decision, where)
        if self.policy.settings.get("event_action") is not None:
            self._event("msg:complete", "accept" if response is CONTINUE else response.action.value, Stage.DATA)
        return EomResult(response, edits, changes, None if self.dry_run else edits.quarantine, summary)

    def _monitored(self, edits: Edits) -> Edits:
        """Monitor mode's edits: every header change stays (A-R, Received-SPF, X-DCC, verdict
        headers, the policy's add_header, removals of forged A-R); recipient changes and the
        quarantine go; the dry-run header names the first refusal not given, and where."""
        kept = Edits(header_adds=list(edits.header_adds), header_removes=list(edits.header_removes))
        header = self.policy.settings.get("dry_run_header")
        if header:
            kept.add_header(HeaderAdd(header, clean_line(self.would_text(edits)), HeaderPosition.END,
                                      "dry-run"))
        return kept

    def would_text(self, edits: Edits) -> str:
        """What monitor mode did not do: `would reject at mail (policy.yaml:12)`, or `would
        accept`, plus the recipient changes and quarantine left out."""
        first = self.would_conn or self.would
        text = f"would {first[0]} at {first[1]} ({first[2]})" if first else "would accept"
        if edits.rcpt_deletes:
            text += f"; would remove {len(edits.rcpt_deletes)} recipient(s)"
        if edits.rcpt_adds:
            text += f"; would add {len(edits.rcpt_adds)} recipient(s)"
        if edits.quarantine:
            text += "; would quarantine"
        return text

    def received_index(self) -> int:
        """Insert position for `:after_received:` headers: after the last Received header."""
        idx = 0
        for i, (name, _v) in enumerate(self.txn.headers if self.txn else []):
            if name.lower() == "received":
                idx = i + 1
        return idx

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
        txn = self.txn
        where = where if where is not None else (decision.where if decision else "")
        if where == "no ACL" and self.deciding:
            where = self.deciding
        client = self.conn.client
        rec = {
            "queue_id": self._qid(),
            "client": f"{self.conn.client.name or 'unknown'}[{self.conn.client.address}]",
            "helo": self.conn.helo,
            "sender": f"<{txn.sender}>" if txn else "",
            "recipients": [r.address for r in txn.recipients if r.accepted] if txn else [],
            "decision": outcome,
            "where": where,
            "checks": check_words(txn.results) if txn else {},
            "prx": _proxy_peer(client) if client.proxied else "",
            "dry_run": self.dry_run,
        }
        self.final = rec
        return rec


def _proxy_peer(client: Any) -> str:
    """The PROXY peer as Exim's `PRX=` shows it: `[address]:port`, the address alone, or
    `yes` when the proxy's address is not known (Postfix does not tell it to a milter)."""
    if not client.proxy_address:
        return "yes"
    return f"[{client.proxy_address}]:{client.proxy_port}" if client.proxy_port else client.proxy_address


def _word(response: Response) -> str:
    """The log line's word for a final response: accept, reject, tempfail, discard or drop."""
    if response.action is Action.CONTINUE or response.action is Action.ACCEPT:
        return "accept"
    return "drop" if response.drop else response.action.value


def _strip_brackets(addr: str) -> str:
    a = (addr or "").strip()
    if a.startswith("<") and a.endswith(">"):
        a = a[1:-1]
    return clean_line(a).strip()
