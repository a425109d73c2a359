"""One short word per check result, for the message log line and the metrics.

Both read the same words, so `spf=fail` in a log line and `check="spf",result="fail"` in
/metrics always agree. Results are the checks' frozen objects; the word is taken from their
declared fields, never from another check's internals.
"""

from __future__ import annotations

import enum
from typing import Any

#: Result fields that hold the summary word, in order of preference: a DCC letter, the
#: A-R word (SPF's enum, DMARC's text), else a status (DKIM's summary property).
_FIELDS = ("letter", "result", "status")


def result_word(value: Any) -> str:
    """The word for one check result: an enum's value, a text as is, `-` for None."""
    if value is None:
        return "-"
    for name in _FIELDS:
        word = getattr(value, name, None)
        if isinstance(word, enum.Enum):
            return str(word.value)
        if isinstance(word, str) and word:
            return word
    if isinstance(value, enum.Enum):
        return str(value.value)
    return type(value).__name__.lower()


def check_words(results: dict[str, Any] | None) -> dict[str, str]:
    """{check name: word} for every check that ran in a transaction (in name order)."""
    return {name: result_word(results[name]) for name in sorted(results or {})}
