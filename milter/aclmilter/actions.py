"""Replies and queued edits: the only place that knows SMTP reply rules and edit order.

Precedence of final outcomes: reject > tempfail > discard > accept. Edits accumulate during
the transaction and are applied at end of message in one fixed order: recipient changes,
header removals (same-name headers highest index first), header additions, quarantine.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ExpansionFailed
from .outcome import Result
from .stages import Stage

#: Default failure codes per stage (Exim acl_wherecodes) and success codes.
DEFAULT_FAIL_CODE = 550
DEFAULT_DEFER_CODE = 451
DEFAULT_ACCEPT_CODE = {Stage.CONNECT: 220, Stage.PREDATA: 354}
DEFAULT_FAIL_TEXT = "Administrative prohibition"
DEFAULT_DEFER_TEXT = "Temporary local problem - please try later"
#: libmilter's smfi_setmlreply accepts at most 32 lines.
MAX_REPLY_LINES = 32

#: A newline not followed by space/tab: it starts a new header line (a header value holding
#: one would inject a header; add_header text is split into headers there).
NEW_HEADER_LINE = re.compile(r"\n(?![ \t])")
_CODE_RE = re.compile(r"^([2-5]\d\d)\s+(?:([2-5])\.(\d{1,3})\.(\d{1,3})\s+)?")


def has_crlf(text: str) -> bool:
    """True if text holds CR, LF or NUL: such text must never reach a header or protocol line."""
    return "\r" in text or "\n" in text or "\0" in text


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def clean_line(text: str) -> str:
    """Return text with CR/LF/NUL and other control characters (not TAB) replaced by spaces."""
    return _CONTROL_CHARS.sub(" ", text)


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: code, optional enhanced status code, one or more text lines (no CR/LF)."""

    code: int
    ecode: str | None
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code {self.code} out of range")
        if self.ecode is not None and self.ecode[0] != str(self.code)[0]:
            raise ValueError(f"enhanced code {self.ecode} does not match reply class {self.code}")
        if not self.lines or len(self.lines) > MAX_REPLY_LINES:
            raise ValueError("a reply needs 1 to 32 lines")
        if any(has_crlf(line) for line in self.lines):
            raise ValueError("reply text holds CR/LF")

    def text(self) -> str:
        """The reply as it appears on the wire (for logs and the dry run)."""
        out = []
        for i, line in enumerate(self.lines):
            dash = "-" if i < len(self.lines) - 1 else " "
            out.append(f"{self.code}{dash}{self.ecode + ' ' if self.ecode else ''}{line}".rstrip())
        return "\n".join(out)


#: Exim splits a reply text longer than this into lines (string_split_message).
SPLIT_AT = 75


def split_message(text: str) -> str:
    """Exim's splitting of long reply texts (its string_split_message): a text longer than
    75 characters is cut into lines of at most ~75 characters at a space, preferring a space
    right after a colon and never in the first 35 characters of a line; when there is no
    space behind, the next space ahead is used. Existing newlines are kept."""
    if len(text) <= SPLIT_AT:
        return text
    chars = list(text)
    n = len(chars)
    s = 0
    while True:
        ss, i = s, 0
        while i < SPLIT_AT and ss < n and chars[ss] != "\n":
            ss += 1
            i += 1
        if ss >= n:
            break
        if chars[ss] == "\n":
            s = ss + 1
            continue
        cut = None
        t = ss
        while t > s + 35:
            if chars[t] == " ":
                if chars[t - 1] == ":":
                    cut = t
                    break
                if cut is None:
                    cut = t
            t -= 1
        if cut is None:
            cut = next((k for k in range(ss + 1, n) if chars[k] in " \n"), None)
            if cut is None:
                break
        chars[cut] = "\n"
        s = cut + 1
    return "".join(chars)


def default_enhanced(code: int) -> str:
    """Enhanced status code used when a message gives none (Postfix wants the class to match)."""
    return {2: "2.0.0", 3: "3.0.0", 4: "4.7.1", 5: "5.7.1"}[code // 100]


def build_reply(message: str | None, default_code: int, default_text: str, enhanced: bool = True) -> Reply:
    """Build a reply from an expanded `message` with Exim's rules.

    A leading `NNN` or `NNN X.Y.Z` is used when its first digit equals the default's first
    digit; otherwise the default code is kept and the supplied code is still stripped.
    Newlines give a multi-line reply (leading whitespace of continuation lines skipped, a
    trailing newline ignored). Without `enhanced` a reply whose text gives no X.Y.Z carries
    none (Exim; setting `enhanced_status_codes: as_given`). Lines beyond 32 are cut; control characters become spaces.
    """
    code, ecode = default_code, None
    text = message if message else default_text
    m = _CODE_RE.match(text)
    if m:
        supplied = int(m.group(1))
        if str(supplied)[0] == str(default_code)[0]:
            code = supplied
            if m.group(2):
                ecode = f"{m.group(2)}.{m.group(3)}.{m.group(4)}"
                if ecode[0] != str(code)[0]:
                    ecode = None
        text = text[m.end():]
    text = text.rstrip("\n")
    lines = [clean_line(line.lstrip() if i else line) for i, line in enumerate(text.split("\n"))]
    lines = [line for line in lines] or [default_text]
    if not any(lines):
        lines = [default_text]
    lines = lines[:MAX_REPLY_LINES]
    return Reply(code, ecode or (default_enhanced(code) if enhanced else None), tuple(lines))


class HeaderPosition(enum.Enum):
    """Where an added header goes (Exim add_header prefixes)."""

    END = ":at_end:"
    START = ":at_start:"
    AFTER_RECEIVED = ":after_received:"
    START_RFC = ":at_start_rfc:"


@dataclass(frozen=True)
class HeaderAdd:
    name: str
    value: str
    position: HeaderPosition = HeaderPosition.END
    source: str = ""      # file:line of the statement that asked for it


@dataclass(frozen=True)
class HeaderRemove:
    """Remove headers whose name equals `name` (case-insensitive) or matches `pattern`."""

    name: str | None = None
    pattern: str | None = None
    index: int | None = None  # one specific occurrence (1-based), None = all matches
    source: str = ""


@dataclass(frozen=True)
class RecipientAdd:
    address: str
    params: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class RecipientDelete:
    address: str          # as the MTA sent it
    source: str = ""


@dataclass
class Edits:
    """Edits queued during a transaction, applied at end of message in a fixed order."""

    header_adds: list[HeaderAdd] = field(default_factory=list)
    header_removes: list[HeaderRemove] = field(default_factory=list)
    rcpt_adds: list[RecipientAdd] = field(default_factory=list)
    rcpt_deletes: list[RecipientDelete] = field(default_factory=list)
    quarantine: str | None = None
    sender: str | None = None           # a new envelope sender (chgfrom), e.g. SRS forwarding

    def add_header(self, add: HeaderAdd) -> None:
        """Queue a header; exact duplicates are suppressed (Exim), CR/LF in the value is refused."""
        if has_crlf(add.name) or ":" in add.name or not add.name:
            raise ValueError(f"invalid header name {add.name!r}")
        if "\r" in add.value or "\0" in add.value or NEW_HEADER_LINE.search(add.value):
            raise ValueError("header value would inject a line")
        if any(a.name.lower() == add.name.lower() and a.value == add.value and a.position == add.position
               for a in self.header_adds):
            return
        self.header_adds.append(add)

    def delete_recipient(self, address: str, source: str = "") -> None:
        if not any(d.address == address for d in self.rcpt_deletes):
            self.rcpt_deletes.append(RecipientDelete(address, source))

    def empty(self) -> bool:
        return not (self.header_adds or self.header_removes or self.rcpt_adds or self.rcpt_deletes
                    or self.quarantine or self.sender is not None)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for the dry run and logs)."""
        return {
            "headers_added": [{"name": a.name, "value": a.value, "position": a.position.value}
                              for a in self.header_adds],
            "headers_removed": [{"name": r.name, "pattern": r.pattern, "index": r.index}
                                for r in self.header_removes],
            "recipients_added": [{"address": a.address, "params": list(a.params)} for a in self.rcpt_adds],
            "recipients_deleted": [d.address for d in self.rcpt_deletes],
            "quarantine": self.quarantine,
            **({"sender": self.sender} if self.sender is not None else {}),
        }


# ---- add_header text: Exim's split rules, queued on the edits -----------------------------
_POSITIONS = {p.value: p for p in HeaderPosition}
_HEADER_NAME = re.compile(r"^[!-9;-~]+\Z")


def split_header_text(text: str) -> tuple[HeaderPosition, list[tuple[str, str]]]:
    """Split add_header text into (position, [(name, value)]) with Exim's rules.

    Leading/trailing newlines are stripped; a newline not followed by space/tab starts a new
    header; a line that is not `Name: value` becomes `X-ACL-Warn: line`.
    """
    position = HeaderPosition.END
    if text[:1] == ":":                 # every position prefix starts with a colon
        for prefix, pos in _POSITIONS.items():
            if text.startswith(prefix):
                position, text = pos, text[len(prefix):]
                break
    text = text.replace("\r\n", "\n").replace("\r", " ").strip("\n")
    out: list[tuple[str, str]] = []
    for block in NEW_HEADER_LINE.split(text):
        if not block.strip():
            continue
        name, sep, value = block.partition(":")
        if sep and _HEADER_NAME.match(name):
            out.append((name, value.lstrip(" ")))
        else:
            out.append(("X-ACL-Warn", block))
    return position, out


def queue_header_text(edits: Edits | None, text: str, source: str) -> None:
    """Queue headers from add_header text (a `warn` message, `add_header`) on `edits`.

    Raises ExpansionFailed (the item errs) outside a message (`edits` None) and when a
    header would inject a line."""
    if edits is None:
        raise ExpansionFailed("add_header outside a message")
    position, headers = split_header_text(text)
    for name, value in headers:
        try:
            edits.add_header(HeaderAdd(name, value, position, source))
        except ValueError as exc:
            raise ExpansionFailed(f"add_header refused: {exc}") from None


@dataclass(frozen=True)
class Decision:
    """What an ACL decided: the result, the reply to send, and who decided (file:line)."""

    result: Result
    reply: Reply | None = None
    log_message: str | None = None
    where: str = ""          # file:line of the deciding statement, "implicit deny", "no ACL"
    stage: Stage | None = None
    user_message: str | None = None    # the expanded `message` text (${acl} returns it)

    @property
    def is_reject(self) -> bool:
        return self.result in (Result.FAIL, Result.DROP)

    @property
    def is_tempfail(self) -> bool:
        return self.result in (Result.DEFER, Result.ERROR)


PRECEDENCE = {Result.FAIL: 0, Result.DROP: 0, Result.DEFER: 1, Result.ERROR: 1, Result.DISCARD: 2,
              Result.OK: 3}


def strongest(decisions: list[Decision]) -> Decision | None:
    """Return the decision that wins: reject > tempfail > discard > accept."""
    if not decisions:
        return None
    return min(decisions, key=lambda d: PRECEDENCE[d.result])


def apply_header_removals(headers: list[tuple[str, str]], removes: list[HeaderRemove]
                          ) -> list[tuple[str, int]]:
    """Return (name, index) pairs to change to empty, highest index first per name.

    The index is the 1-based occurrence number among headers of that name, which is what
    smfi_chgheader expects; deleting from the highest index down keeps lower indexes valid.
    """
    if not removes:
        return []
    counts: dict[str, int] = {}
    targets: list[tuple[str, int]] = []
    for name, value in headers:
        low = name.lower()
        counts[low] = counts.get(low, 0) + 1
        idx = counts[low]
        for r in removes:
            if r.name is not None and r.name.lower() != low:
                continue
            if r.pattern is not None and not re.match(r.pattern, f"{name}: {value}", re.I):
                continue
            if r.index is not None and r.index != idx:
                continue
            targets.append((name, idx))
            break
    targets.sort(key=lambda t: (t[0].lower(), -t[1]))
    return targets
