"""Regex use with limits, because subjects (and sometimes patterns) come from messages.

Python's `re` has no time limit, so two caps bound the work a message can cause:
subjects longer than MAX_SUBJECT characters are cut to that length before matching (a header
of 64 KiB is matched on its first 16 KiB), and patterns built at run time are refused beyond
MAX_PATTERN characters. Static patterns were compiled (and checked) at policy load.
"""

from __future__ import annotations

import functools
import re

from ..errors import ExpansionFailed

MAX_SUBJECT = 16 * 1024
MAX_PATTERN = 1024


@functools.lru_cache(maxsize=256)
def _compile(pattern: str, flags: int) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def dynamic(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile a pattern produced at run time; a bad or oversized pattern fails the expansion."""
    if len(pattern) > MAX_PATTERN:
        raise ExpansionFailed(f"regular expression longer than {MAX_PATTERN} characters")
    try:
        return _compile(pattern, flags)
    except re.error as exc:
        raise ExpansionFailed(f"bad regular expression: {exc}") from None


def search(compiled: re.Pattern[str] | None, pattern: str, subject: str, flags: int = 0) -> re.Match[str] | None:
    """Search `subject` (capped) with the static compiled pattern or `pattern` compiled now."""
    rx = compiled if compiled is not None else dynamic(pattern, flags)
    return rx.search(subject[:MAX_SUBJECT])
