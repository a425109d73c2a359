"""What a loaded policy needs from the MTA: which milter steps must answer, and whether the
message content (headers and body) must be sent at all.

Every step the MTA skips or does not wait for saves a round trip and a callback (a thread
wake-up and a GIL hand-over in the service). A step must answer only when its ACL can refuse
by design: a refusing verb, `endpass`, a nested ACL (not looked into), `delay`, or an ACL that can
run off its end (implicit deny). An ACL of `warn`s ending in a plain `accept` is still run at
its step, but the MTA does not wait for it; a deferral or error inside it is held by the
service and given at the next step the MTA waits for. RCPT is stricter, because its answer is
per recipient: a condition outside `warn` there (it could defer) makes RCPT answer.

The analysis is conservative: anything it cannot prove unneeded is needed. It runs once per
loaded policy; a connection negotiates with the snapshot it started with, so a reload never
changes what an open connection receives.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..actions import HeaderPosition
from ..clients.dns import early_lookups_on
from ..outcome import Verb
from ..registry import TABLES, Kind
from .model import Acl, Policy

#: add_header positions that do not depend on the headers already in the message.
_POSITION_FREE = (HeaderPosition.START.value, HeaderPosition.END.value)
_ALL_POSITIONS = tuple(p.value for p in HeaderPosition)

#: Steps before end of message that can refuse on their own (the stage key of each).
REPLY_STEPS = ("connect", "helo", "mail", "rcpt", "predata")
#: Steps whose answer is per recipient: a possible deferral there must be answered at once.
PER_RECIPIENT_STEPS = frozenset({"rcpt"})

#: Verbs that refuse when their conditions are true.
_REFUSING_VERBS = frozenset({Verb.DENY, Verb.DEFER, Verb.DROP, Verb.REQUIRE, Verb.DISCARD})
#: Modifiers whose whole point is the moment the client gets its answer.
_ANSWER_MODIFIERS = frozenset({"delay"})


@dataclass(frozen=True)
class Needs:
    """`replies`: the pre-EOM steps whose answer may refuse; `content_reasons`: why headers
    and body are needed (empty: they are not); `acl_steps`: the pre-EOM steps whose stage has
    an ACL to run (every step unless analysed: the safe answer)."""

    replies: frozenset[str]
    content_reasons: tuple[str, ...]
    acl_steps: frozenset[str] = frozenset(REPLY_STEPS)
    #: DNS-based checks the policy will run, whose lookups may start early (early.py)
    early: frozenset[str] = frozenset()

    def work_at(self, step: str) -> bool:
        """The session has something to do at this step (an ACL to run, or a refusal to make)."""
        return step in self.replies or step in self.acl_steps

    @property
    def content(self) -> bool:
        """Headers and body must be sent."""
        return bool(self.content_reasons)

    @property
    def predata(self) -> bool:
        """The DATA step must be seen."""
        return "predata" in self.replies

    def summary(self) -> str:
        """One log line: what the MTA will be asked to send and wait for."""
        steps = ", ".join(s for s in REPLY_STEPS if s in self.replies) or "none"
        content = f"yes ({'; '.join(self.content_reasons)})" if self.content else "no"
        return f"answers needed at: {steps}; headers and body needed: {content}"


#: What a policy we cannot analyse needs: everything.
EVERYTHING = Needs(frozenset(REPLY_STEPS), ("policy not analysed",))



def _header_text_needs_headers(text: str) -> bool:
    """True unless the add_header text provably lands at the very top or the very end.

    The position prefix is read after expansion, so text that starts with `$` or `\\` might
    expand to any position: such text needs the headers too.
    """
    if text.startswith(_POSITION_FREE):
        return False
    if text.startswith(_ALL_POSITIONS):
        return True
    return text[:1] in ("$", "\\")


def _content_reasons(policy: Policy) -> list[str]:
    reasons = [f"a {stage} ACL" for stage in ("data", "deliver") if policy.acl_for(stage) is not None]
    if policy.settings.get("authserv_id"):
        reasons.append("settings.authserv_id (forged Authentication-Results are removed)")
    for st, use in policy.uses():
        where = f"{use.mark.file}:{use.mark.line}"
        if use.name == "remove_header":
            reasons.append(f"remove_header at {where}")
        elif use.name == "control":
            name = use.static[0] if use.has_static else None
            entry = TABLES.controls.get(name) if name else None
            if entry is None or entry.needs_content:
                # a control computed at run time could be any of them: assume it reads the message
                reasons.append(f"control = {name or use.text} at {where}")
        elif (use.name == "add_header" or (st.verb is Verb.WARN and use.name == "message")) \
                and _header_text_needs_headers(use.text):
            reasons.append(f"a header position that depends on the message's headers at {where}")
    return reasons


def _may_refuse(acl: Acl, *, per_recipient: bool) -> bool:
    """True unless every way through `acl` provably ends in accept (see module docstring)."""
    for st in acl.statements:
        names = [use.name for use in st.items]
        if st.verb in _REFUSING_VERBS or _ANSWER_MODIFIERS.intersection(names) or "acl" in names:
            return True                    # a nested ACL is not looked into: it could do anything
        if st.verb is Verb.WARN:
            continue                       # a warn never decides, even when it defers
        if "endpass" in names:             # a condition failing after endpass denies
            return True
        if per_recipient and any(use.entry.kind is Kind.CONDITION for use in st.items):
            return True
    last = acl.statements[-1] if acl.statements else None
    unconditional_accept = (last is not None and last.verb is Verb.ACCEPT
                            and all(use.entry.kind is not Kind.CONDITION for use in last.items))
    return not unconditional_accept        # otherwise it can run off its end: implicit deny


def analyse(policy: Policy) -> Needs:
    """The milter steps and content this policy can use (see module docstring)."""
    proxy_required = policy.settings.get("proxy_required_hosts") is not None
    replies = set()
    for step in REPLY_STEPS:
        acl = policy.acl_for(step)
        if acl is not None and _may_refuse(acl, per_recipient=step in PER_RECIPIENT_STEPS):
            replies.add(step)
        elif proxy_required and step != "connect":
            replies.add(step)        # proxy_required_hosts refuses every command from HELO on
    if policy.settings.get("event_action") is not None:
        replies.add("connect")       # a non-empty result at tcp:/smtp:connect refuses (events.py)
    acl_steps = frozenset(step for step in REPLY_STEPS if policy.acl_for(step) is not None)
    return Needs(frozenset(replies), tuple(_content_reasons(policy)), acl_steps, early_checks(policy))


#: Checks whose DNS questions early.py knows how to start before the check runs.
EARLY_CHECKS = frozenset({"spf", "spf_guess", "dkim", "dmarc"})


def early_checks(policy: Policy) -> frozenset[str]:
    """The checks of EARLY_CHECKS this policy runs: named by its conditions (with the checks
    they need, e.g. dmarc needs spf and dkim), or by a hook it enables (the
    Authentication-Results header verifies DKIM). None with `settings.dns.early: false`."""
    if not early_lookups_on(policy.settings.get("dns")):
        return frozenset()
    names = {c for _st, use in policy.uses() for c in use.entry.checks}
    if policy.settings.get("authserv_id"):
        names.add("dkim")
    todo = list(names)
    while todo:
        entry = TABLES.checks.get(todo.pop())
        for dep in entry.needs if entry is not None else ():
            if dep not in names:
                names.add(dep)
                todo.append(dep)
    return frozenset(names & EARLY_CHECKS)
