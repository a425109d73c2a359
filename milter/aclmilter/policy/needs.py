"""What a loaded policy needs from the MTA: which milter steps must answer, and whether the
message content (headers and body) must be sent at all.

Every step the MTA skips or does not wait for saves a round trip and a callback (a thread
wake-up and a GIL hand-over in the service). The analysis is conservative: anything it cannot
prove unneeded is needed. It runs once per loaded policy; a connection negotiates with the
snapshot it started with, so a reload never changes what an open connection receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..actions import HeaderPosition
from ..outcome import Verb
from ..registry import TABLES
from .model import ItemUse, Policy

#: add_header positions that do not depend on the headers already in the message.
_POSITION_FREE = (HeaderPosition.START.value, HeaderPosition.END.value)
_ALL_POSITIONS = tuple(p.value for p in HeaderPosition)

#: Steps before end of message that can refuse on their own (the stage key of each).
REPLY_STEPS = ("connect", "helo", "mail", "rcpt", "predata")


@dataclass(frozen=True)
class Needs:
    """`replies`: the pre-EOM steps whose answer may refuse; `content_reasons`: why headers
    and body are needed (empty: they are not)."""

    replies: frozenset[str]
    content_reasons: tuple[str, ...]

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


def _uses(policy: Policy) -> Iterator[tuple[bool, ItemUse]]:
    """Every item of every ACL (named ones too): (in a warn statement, item)."""
    for acl in policy.acls.values():
        for st in acl.statements:
            for use in st.items:
                yield st.verb is Verb.WARN, use


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
    for in_warn, use in _uses(policy):
        where = f"{use.mark.file}:{use.mark.line}"
        if use.name == "remove_header":
            reasons.append(f"remove_header at {where}")
        elif use.name == "control":
            name = use.static[0] if use.has_static else None
            entry = TABLES.controls.get(name) if name else None
            if entry is None or entry.needs_content:
                # a control computed at run time could be any of them: assume it reads the message
                reasons.append(f"control = {name or use.text} at {where}")
        elif (use.name == "add_header" or (in_warn and use.name == "message")) \
                and _header_text_needs_headers(use.text):
            reasons.append(f"a header position that depends on the message's headers at {where}")
    return reasons


def analyse(policy: Policy) -> Needs:
    """The milter steps and content this policy can use (see module docstring)."""
    proxy_required = policy.settings.get("proxy_required_hosts") is not None
    replies = set()
    for step in REPLY_STEPS:
        if policy.acl_for(step) is not None:
            replies.add(step)
        elif proxy_required and step != "connect":
            replies.add(step)        # proxy_required_hosts refuses every command from HELO on
    return Needs(frozenset(replies), tuple(_content_reasons(policy)))
