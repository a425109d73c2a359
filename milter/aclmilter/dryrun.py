"""Drive one SMTP session through a Session without an MTA (`aclmilter test`, scenario tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .runtime import Runtime
from .session import Action, Session


@dataclass
class SessionSpec:
    """One simulated SMTP session: client, HELO, envelope, message, MTA macros."""

    client_ip: str
    sender: str
    rcpts: list[str]
    helo: str = ""
    client_name: str = ""
    client_port: int = 0
    headers: list[tuple[str, str]] | None = None
    body: bytes = b"test\r\n"
    macros: dict[str, str] = field(default_factory=dict)
    queue_id: str = "TESTQID"
    mail_args: list[str] = field(default_factory=list)     # ESMTP MAIL parameters (RET=HDRS ...)
    rcpt_args: list[str] = field(default_factory=list)     # ESMTP parameters sent with every RCPT


def read_message(data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Split a message into (headers as an MTA passes them to a milter, CRLF body).

    Header values lose the one space after the colon (Postfix does the same) and keep their
    folding as LF + whitespace.
    """
    raw = data.replace(b"\r\n", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        head, body = raw, b""
    headers: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "surrogateescape").split("\n"):
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + "\n" + line)
        elif ":" in line:
            name, _, value = line.partition(":")
            headers.append((name, value[1:] if value.startswith(" ") else value))
    return headers, body.replace(b"\n", b"\r\n")


def read_message_file(path: str | Path) -> tuple[list[tuple[str, str]], bytes]:
    return read_message(Path(path).read_bytes())


def _step(stage: str, resp: object, rcpt: str | None = None) -> dict:
    reply = getattr(resp, "reply", None)
    return {"stage": stage, "recipient": rcpt, "action": resp.action.value,  # type: ignore[attr-defined]
            "reply": reply.text() if reply else None, "drop": getattr(resp, "drop", False)}


def simulate(runtime: Runtime, spec: SessionSpec, *, live: bool = False) -> dict:
    """Run connect → helo → mail → rcpt* → data → eom as an MTA would; return the full report.

    The MTA's behaviour is imitated: a refused connect/helo still lets the client try MAIL
    (Postfix then refuses every command itself); a rejected MAIL ends the transaction; DATA
    is only sent when a recipient was accepted. `live`: run with the service's side effects
    (event actions, writes) instead of as a simulation; the scenario tests use it for events.
    """
    macros = dict(spec.macros)
    macros.setdefault("{client_addr}", spec.client_ip)
    if spec.client_port:
        macros.setdefault("{client_port}", str(spec.client_port))
    if spec.client_name:
        macros.setdefault("{client_name}", spec.client_name)
    session = Session(runtime, trace=True, simulate=not live)
    family = "inet6" if ":" in spec.client_ip else "inet"
    steps: list[dict] = []
    eom = None
    resp = session.connect(spec.client_name or f"[{spec.client_ip}]", family, spec.client_ip,
                           spec.client_port, macros)
    steps.append(_step("connect", resp))
    if not resp.drop:
        resp = session.helo(spec.helo or spec.client_name or f"[{spec.client_ip}]", macros)
        steps.append(_step("helo", resp))
    if not resp.drop:
        resp = session.mail(spec.sender, list(spec.mail_args), macros)
        steps.append(_step("mail", resp))
        if resp.action is Action.CONTINUE:
            accepted = 0
            for rcpt in spec.rcpts:
                r = session.rcpt(rcpt, list(spec.rcpt_args), {**macros, "i": spec.queue_id})
                steps.append(_step("rcpt", r, rcpt))
                accepted += r.action is Action.CONTINUE
                if r.drop:
                    break
            if accepted and not session.conn.drop:
                resp = session.data(macros)
                steps.append(_step("predata", resp))
                if resp.action is Action.CONTINUE:
                    headers = spec.headers if spec.headers is not None else [
                        ("From", f"<{spec.sender}>" if spec.sender else "<>"), ("Subject", "aclmilter test")]
                    for name, value in headers:
                        session.header(name, value)
                    session.eoh()
                    session.body(spec.body)
                    eom = session.eom({"i": spec.queue_id, **macros})
                    steps.append(_step("eom", eom.response))
    session.close()
    return {
        "policy": str(runtime.policy_path),
        "steps": steps,
        "stages": [r.as_dict() for r in session.records],
        "edits": eom.edits.as_dict() if eom else None,
        "header_changes": [list(c) for c in eom.header_changes] if eom else [],
        "final": session.final,
    }
