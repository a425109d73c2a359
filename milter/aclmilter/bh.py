"""`aclmilter bh`: replay an SMTP dialogue through the policy, like `exim -bh`.

The dialogue is what a client sends: HELO/EHLO (optional), MAIL with ESMTP parameters, RCPT,
DATA followed by the message up to `.`, RSET, NOOP, QUIT, as many transactions as wanted.
One Session (the service's, in simulate mode: no reports, no delays, no shared-state writes
beyond what `aclmilter test` does) lives for the whole dialogue, so `acl_c_*`, rate limits
and held refusals carry across transactions as in the service.

Two views of the replies:
- `postfix` (default): what a client gets from Postfix with aclmilter attached, measured
  against real Postfix 3.7 (tests/integration/test_exim_oracle.py): a refusal at connect turns
  the banner into 554 (a 4xx keeps it) and is given at every MAIL; a HELO refusal is not seen
  at HELO but at every later MAIL of the connection; a 5xx from either shrinks the EHLO reply;
  `drop` is 521/421 and the connection ends; a step Postfix does not wait for (policy/needs.py)
  holds its deferral until the next step it waits for, as service/glue.py does.
- `exim`: what Exim itself would answer: refusals at the command that caused them, a connect
  refusal closes the connection, MAIL needs HELO (Exim's `hosts_require_helo = *`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .dryrun import read_message
from .policy.needs import Needs
from .runtime import Runtime
from .service.reply import map_response
from .service.held import GO_ON, HeldRefusals
from .responses import Action, Response
from .session import Session


class Mta(enum.Enum):
    POSTFIX = "postfix"
    EXIM = "exim"


_POSTFIX_EHLO = ("PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME",
                 "DSN", "SMTPUTF8", "CHUNKING")
_EXIM_EHLO = ("SIZE 52428800", "8BITMIME", "PIPELINING", "CHUNKING", "HELP")


def split_address(arg: str, keyword: str) -> tuple[str, list[str]] | None:
    """`FROM:<a@b> SIZE=10` -> ("<a@b>", ["SIZE=10"]); None when the keyword is missing."""
    head, sep, rest = arg.partition(":")
    if not sep or head.strip().upper() != keyword:
        return None
    rest = rest.strip()
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            return None
        return rest[:end + 1], rest[end + 1:].split()
    words = rest.split()
    return (words[0] if words else ""), words[1:]


@dataclass
class Dialogue:
    """One replayed SMTP connection; `replies` collects every reply line, `trace` the -d output."""

    runtime: Runtime
    client_ip: str
    mta: Mta = Mta.POSTFIX
    debug: bool = False
    replies: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Exim's view needs each stage's decision (an accept's `message` is its 2xx text)
        self.session = Session(self.runtime, trace=self.debug or self.mta is Mta.EXIM, simulate=True)
        self.host = str(self.session.policy.settings.get("primary_hostname") or "localhost")
        self.macros = {"{client_addr}": self.client_ip, "j": self.host}
        self.needs: Needs = self.session.snapshot.needs
        self.helo_ok = False
        self.in_txn = False
        self.accepted = 0
        self.last_rcpt_refusal: list[str] = []
        self.closed = False
        self.messages = 0
        # postfix view: refusals Postfix keeps for the connection, and held ones (glue rules)
        self.sticky: Response | None = None
        self.held = HeldRefusals()
        self._seen_records = 0
        self._step_records: list = []

    # ---- output ------------------------------------------------------------------------------
    def _say(self, *lines: str) -> None:
        self.replies.extend(lines)

    def _refusal_lines(self, response: Response) -> list[str]:
        """The reply lines the client reads for a refusal."""
        if self.mta is Mta.POSTFIX:
            args = map_response(response).setreply or ("451", "4.3.0", "Temporary local problem")
            code, ecode, lines = str(args[0]), args[1], [str(a).replace("%%", "%") for a in args[2:]]
            if ecode is None and len(lines) > 1:
                ecode = f"{code[0]}.0.0"        # Postfix adds it to a multi-line reply without one
            prefix = f"{ecode} " if ecode else ""
            return [f"{code}{'-' if i < len(lines) - 1 else ' '}{prefix}{line}".rstrip()
                    for i, line in enumerate(lines)]
        if response.reply is not None:
            return response.reply.text().split("\n")
        return ["550 Administrative prohibition" if response.action is Action.REJECT
                else "451 Temporary local problem - please try later"]

    def _accept_text(self, stage: str, default: str) -> str:
        """Exim's view: the reply an accepting ACL's `message` gave at the last step, else `default`."""
        if self.mta is Mta.EXIM:
            for rec in reversed(self._step_records):
                if rec.stage == stage:
                    if rec.decision == "ok" and rec.reply and rec.reply[:1] == default[:1]:
                        return rec.reply
                    break
        return default

    def _flush_trace(self) -> None:
        self._step_records = self.session.records[self._seen_records:]
        if not self.debug:
            self._seen_records = len(self.session.records)
            return
        for rec in self.session.records[self._seen_records:]:
            title = rec.stage + (f" <{rec.recipient}>" if rec.recipient else "")
            self.trace.append(f"== {title}")
            for t in rec.trace:
                self.trace.append(f"   {t['where']}: {t['what']}" + (f"  -> {t['result']}" if t["result"] else ""))
            for line in rec.log_lines:
                self.trace.append(f"   log: {line}")
            self.trace.append(f"   decision: {rec.decision} ({rec.where})")
        self._seen_records = len(self.session.records)

    # ---- held refusals (postfix view; the rules of service/glue.py) ----------------------------
    def _answered(self, step: str) -> bool:
        return step in self.needs.replies

    def _postfix_step(self, step: str, response: Response) -> Response:
        """Apply the glue's hold-and-give-later rule for one step; returns what Postfix acts on."""
        answer = self.held.step(step, response, self._answered(step), _no_where)
        if answer is None or answer is GO_ON:
            return Response(Action.CONTINUE)
        if answer.held and step == "rcpt":
            self.session.refuse_last_recipient(answer.response.action)
        return answer.response

    # ---- commands ----------------------------------------------------------------------------
    def connect(self) -> None:
        family = "inet6" if ":" in self.client_ip else "inet"
        resp = self.session.connect(f"[{self.client_ip}]", family, self.client_ip, 0, self.macros)
        self._flush_trace()
        if self.mta is Mta.EXIM:
            if resp.action in (Action.REJECT, Action.TEMPFAIL):
                self._say(*self._refusal_lines(resp))
                self.closed = True
            else:
                self._say(f"220 {self.host} ESMTP")
            return
        resp = self._postfix_step("connect", resp)
        if resp.action in (Action.REJECT, Action.TEMPFAIL):
            self.sticky = resp
            if resp.drop:
                self._say(*self._refusal_lines(resp))
                self.closed = True
                return
            if resp.action is Action.REJECT:
                self._say(f"554 {self.host} ESMTP not accepting connections")
                return
        self._say(f"220 {self.host} ESMTP")

    def helo(self, verb: str, name: str) -> None:
        if not name:
            self._say("501 Syntactically invalid HELO argument(s)" if self.mta is Mta.EXIM
                      else f"501 Syntax: {verb} hostname")
            return
        self._end_txn()
        if self.mta is Mta.POSTFIX:
            self.held.new_helo()
        resp = self.session.helo(name, self.macros)
        self._flush_trace()
        if self.mta is Mta.EXIM:
            if resp.action is not Action.CONTINUE:
                self.helo_ok = False
                self._say(*self._refusal_lines(resp))
                self.closed = resp.drop
                return
            self.helo_ok = True
            first = f"{self.host} Hello {name} [{self.client_ip}]"
            self._ehlo_lines(verb, first, _EXIM_EHLO)
            return
        resp = self._postfix_step("helo", resp)
        if resp.drop:
            self._say(*self._refusal_lines(resp))
            self.closed = True
            return
        if resp.action is not Action.CONTINUE and self.sticky is None:
            self.sticky = resp
        if self.sticky is not None and self.sticky.action is Action.REJECT:
            self._ehlo_lines(verb, self.host, ("ENHANCEDSTATUSCODES",))
        else:
            self._ehlo_lines(verb, self.host, _POSTFIX_EHLO)

    def _ehlo_lines(self, verb: str, first: str, caps: tuple[str, ...]) -> None:
        if verb == "HELO":
            self._say(f"250 {first}")
            return
        self._say(f"250-{first}", *[f"250-{c}" for c in caps[:-1]], f"250 {caps[-1]}")

    def _refused(self, step: str, resp: Response) -> bool:
        """After a session step: trace it, apply the Postfix hold rule, and say a refusal
        (True: the command was refused; a `drop` also ends the connection)."""
        self._flush_trace()
        if self.mta is Mta.POSTFIX:
            resp = self._postfix_step(step, resp)
        if resp.action not in (Action.REJECT, Action.TEMPFAIL):
            return False
        lines = self._refusal_lines(resp)
        if step == "rcpt":
            self.last_rcpt_refusal = lines
        self._say(*lines)
        self.closed = resp.drop
        return True

    def _operand(self, verb: str, arg: str) -> tuple[str, list[str]] | None:
        """The address and ESMTP parameters of MAIL/RCPT, or None after the 501 reply."""
        parsed = split_address(arg, "FROM" if verb == "MAIL" else "TO")
        if parsed is None:
            self._say(f"501 {verb} must have an address operand" if self.mta is Mta.EXIM
                      else f"501 5.5.4 Syntax: {verb} {'FROM' if verb == 'MAIL' else 'TO'}:<address>")
        return parsed

    def mail(self, arg: str) -> None:
        exim = self.mta is Mta.EXIM
        parsed = self._operand("MAIL", arg)
        if parsed is None:
            return
        if exim and not self.helo_ok:
            self._say("503 HELO or EHLO required")
            return
        if self.in_txn:
            self._say("503 sender already given" if exim else "503 5.5.1 Error: nested MAIL command")
            return
        if not exim and self.sticky is not None:
            self._say(*self._refusal_lines(self.sticky))
            return
        addr, params = parsed
        self.messages += 1
        self.macros["i"] = f"TESTQID{self.messages}"
        if not exim:
            self.held.new_transaction()
        if self._refused("mail", self.session.mail(addr, params, self.macros)):
            self.session.abort()
            return
        self.in_txn, self.accepted, self.last_rcpt_refusal = True, 0, []
        self._say(self._accept_text("mail", "250 OK") if exim else "250 2.1.0 Ok")

    def rcpt(self, arg: str) -> None:
        exim = self.mta is Mta.EXIM
        parsed = self._operand("RCPT", arg)
        if parsed is None:
            return
        if not self.in_txn:
            self._say("503 sender not yet given" if exim else "503 5.5.1 Error: need MAIL command")
            return
        addr, params = parsed
        if self._refused("rcpt", self.session.rcpt(addr, params, self.macros)):
            return
        self.accepted += 1
        self._say(self._accept_text("rcpt", "250 Accepted") if exim else "250 2.1.5 Ok")

    def data(self, lines: Iterator[str]) -> None:
        exim = self.mta is Mta.EXIM
        if not self.in_txn or not self.accepted:
            if exim:
                if self.last_rcpt_refusal:
                    texts = [line[4:] for line in self.last_rcpt_refusal]
                    self._say("503-All RCPT commands were rejected with this error:",
                              *[f"503-{t}" for t in texts], "503 valid RCPT command must precede DATA")
                else:
                    self._say("503 valid RCPT command must precede DATA")
            elif not self.in_txn:
                self._say("503 5.5.1 Error: need RCPT command")
            else:
                self._say("554 5.5.1 Error: no valid recipients")
            return
        if self._refused("predata", self.session.data(self.macros)):
            self._end_txn()
            return
        self._say('354 Enter message, ending with "." on a line by itself' if exim
                  else "354 End data with <CR><LF>.<CR><LF>")
        raw: list[str] = []
        for line in lines:
            if line == ".":
                break
            raw.append(line[1:] if line.startswith(".") else line)
        headers, body = read_message("\n".join(raw).encode("utf-8", "surrogateescape") + b"\n")
        for name, value in headers:
            self.session.header(name, value)
        self.session.eoh()
        self.session.body(body)
        held = None
        if not exim:
            held = self.held.current()
        result = self.session.eom(self.macros, held)
        self._flush_trace()
        resp = result.response
        self.in_txn = False
        if not exim:
            self.held.new_transaction()
        self.session.abort()
        if resp.action in (Action.REJECT, Action.TEMPFAIL):
            self._say(*self._refusal_lines(resp))
            self.closed = resp.drop
            return
        qid = self.macros["i"]
        self._say(self._accept_text("data", f"250 OK id={qid}") if exim else f"250 2.0.0 Ok: queued as {qid}")

    def _end_txn(self) -> None:
        self.session.abort()
        self.in_txn, self.accepted, self.last_rcpt_refusal = False, 0, []

    def rset(self) -> None:
        self._end_txn()
        if self.mta is Mta.POSTFIX:
            self.held.new_transaction()
        self._say("250 Reset OK" if self.mta is Mta.EXIM else "250 2.0.0 Ok")

    def run(self, lines: Iterable[str]) -> list[str]:
        """Replay every command; stops at QUIT, at a dropped connection or at the end of input."""
        it = iter(line.rstrip("\r\n") for line in lines)
        self.connect()
        exim = self.mta is Mta.EXIM
        for line in it:
            if self.closed:
                break
            verb, _, arg = line.strip().partition(" ")
            verb = verb.upper()
            if not verb:
                continue
            if verb in ("HELO", "EHLO"):
                self.helo(verb, arg.strip())
            elif verb == "MAIL":
                self.mail(arg)
            elif verb == "RCPT":
                self.rcpt(arg)
            elif verb == "DATA":
                self.data(it)
            elif verb == "RSET":
                self.rset()
            elif verb == "NOOP":
                self._say("250 OK" if exim else "250 2.0.0 Ok")
            elif verb == "QUIT":
                self._say(f"221 {self.host} closing connection" if exim else "221 2.0.0 Bye")
                break
            else:
                self._say("500 unrecognized command" if exim else "502 5.5.2 Error: command not recognized")
        self.session.close()
        return self.replies


def _no_where() -> str:
    """bh names no statement for a held refusal (its trace shows the statements)."""
    return ""
