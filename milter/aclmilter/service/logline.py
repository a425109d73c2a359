"""The line logged for every message or refused transaction, and its count in the metrics.

`finish()` is the one place a message ends for the outside world: it counts the message
(`aclmilter_messages_total{decision,stage}` with the words of the log line) and its check
results (`aclmilter_check_results_total{check,result}`, once per check per message), then
writes the line. Formats: logfmt (default; a value with a space, `=`, `"` or a control
character is double-quoted with `\\` escapes) or JSON (`serve --log-format json`).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from .. import conditions  # noqa: F401 - the features' record fields (registry.record_field)
from ..registry import TABLES
from . import logsetup

FORMATS = ("logfmt", "json")
#: the check results every line carries (`-` when the policy did not use the check)
CHECK_FIELDS = ("spf", "dkim", "dmarc", "dcc")
#: a logfmt value that can go bare
_BARE = re.compile(r"[^\s=\"\\\x00-\x1f\x7f]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """A logfmt value: bare when it can be, else in double quotes with escapes."""
    if _BARE.fullmatch(value):
        return value
    return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 32 or ord(c) == 127 else c)
                         for c in value) + '"'


def split_decision(decision: str) -> tuple[str, str]:
    """`reject_at_rcpt` -> ("reject", "rcpt"); a word alone was decided at end of data, but
    an `aborted` transaction (RSET, client gone before DATA ended) has no stage ("-")."""
    word, sep, stage = decision.partition("_at_")
    if sep:
        return (word or "-"), stage
    return (word or "-"), ("-" if word in ("aborted", "-", "") else "data")


def fields(rec: dict) -> dict[str, Any]:
    """The line's fields in order, from a session's log record: the core's, the checks', the
    fields features register (registry.record_field, "-" when empty), then dry_run."""
    rcpts = rec.get("recipients") or []
    checks = rec.get("checks") or {}
    out: dict[str, Any] = {
        "qid": rec.get("queue_id") or "-",
        "client": rec.get("client", ""),
        "helo": rec.get("helo") or "-",
        "from": rec.get("sender", ""),
        "to": ",".join(f"<{r}>" for r in rcpts) or "-",
        "decision": rec.get("decision") or "-",
        "where": rec.get("where") or "-",
    }
    for name in CHECK_FIELDS:
        out[name] = checks.get(name, "-")
    for name in TABLES.record_fields:       # features' own fields (msglog), e.g. prx
        out[name] = rec.get(name) or "-"
    if rec.get("dry_run"):
        out["dry_run"] = "yes"
    return out


def format_logfmt(rec: dict) -> str:
    return " ".join(f"{k}={quote(str(v))}" for k, v in fields(rec).items())


def format_json(rec: dict) -> str:
    out = fields(rec)
    out["to"] = list(rec.get("recipients") or [])
    out["checks"] = dict(rec.get("checks") or {})
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


_FORMATTERS = {"logfmt": format_logfmt, "json": format_json}


def finish(logger: logging.Logger, rec: dict, metrics: Any, fmt: str = "logfmt") -> None:
    """Count one finished message or transaction, then log its line (built only if logged)."""
    if metrics is not None:
        word, stage = split_decision(rec.get("decision") or "-")
        metrics.message(word, stage)
        for check, result in (rec.get("checks") or {}).items():
            metrics.check_result(check, result)
    if logger.isEnabledFor(logging.INFO):
        logsetup.message_line(logger, _FORMATTERS[fmt](rec))
