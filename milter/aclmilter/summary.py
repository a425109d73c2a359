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
#: result class -> the field its word is in ("" for an enum that is its own word); found once
#: per class, so the per-message cost is one dict lookup and one attribute read per check
_FIELD_OF: dict[type, str] = {}


def _field(value: Any) -> str:
    """The first of _FIELDS the result's class has (by attribute, not by this value's text)."""
    for name in _FIELDS:
        if isinstance(getattr(value, name, None), (enum.Enum, str)):
            return name
    return ""


def result_word(value: Any) -> str:
    """The word for one check result: an enum's value, a text as is, `-` for None."""
    if value is None:
        return "-"
    cls = type(value)
    name = _FIELD_OF.get(cls)
    if name is None:
        name = _FIELD_OF[cls] = _field(value)
    word = getattr(value, name) if name else value
    if isinstance(word, enum.Enum):
        return str(word._value_)        # the member's value without the descriptor calls
    if isinstance(word, str):
        return word or "-"
    return cls.__name__.lower()


def check_words(results: dict[str, Any] | None) -> dict[str, str]:
    """{check name: word} for every check that ran in a transaction, in the order they ran.

    Results memoised per key (`ctx.check(name, key=...)`, stored under (name, key)) have no
    single word and are left out."""
    if not results:
        return {}
    return {name: result_word(value) for name, value in results.items() if type(name) is str}
