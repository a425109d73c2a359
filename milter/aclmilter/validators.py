"""Validators for `settings:` values (each raises SyntaxProblem with a clear message)."""

from __future__ import annotations

import math
from typing import Any, Callable

from .errors import SyntaxProblem


def text(value: Any) -> str:
    """A string (numbers are accepted as their text)."""
    if isinstance(value, (dict, list)) or value is None:
        raise SyntaxProblem("a string is expected")
    if isinstance(value, bool):
        raise SyntaxProblem("a string is expected, not a boolean")
    s = str(value)
    if "\r" in s or "\n" in s:
        raise SyntaxProblem("line breaks are not allowed here")
    return s


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def boolean(value: Any) -> bool:
    """true/false (YAML booleans, or yes/no/1/0 text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str)) and str(value).lower() in ("1", "yes", "true", "on"):
        return True
    if isinstance(value, (int, str)) and str(value).lower() in ("0", "no", "false", "off"):
        return False
    raise SyntaxProblem("true or false is expected")


def bounded_number(value: Any, what: str, minimum: float, maximum: float, integer: bool = False,
                   unit: str = "") -> Any:
    """`value` as a number within [minimum, maximum]; errors name `what` (e.g. "dns.timeout")."""
    prefix = f"{what}: " if what else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SyntaxProblem(f"{prefix}a number{' of ' + unit if unit else ''} is expected")
    try:
        n = int(value) if integer else float(value)
    except (ValueError, OverflowError):   # OverflowError: int(.inf)
        raise SyntaxProblem(f"{prefix}{str(value)[:40]!r} is not a number") from None
    if not math.isfinite(n) or not minimum <= n <= maximum:
        raise SyntaxProblem(f"{prefix}must be between {minimum:g} and {maximum:g}{' ' + unit if unit else ''}")
    return n


def number(minimum: float = 0, maximum: float = float("inf"), integer: bool = False) -> Callable[[Any], Any]:
    """A validator for a number within [minimum, maximum]."""
    def parse(value: Any) -> Any:
        return bounded_number(value, "", minimum, maximum, integer)
    return parse


def choice(*choices: str) -> Callable[[Any], str]:
    """One of a fixed set of words."""
    def parse(value: Any) -> str:
        s = str(value).lower() if not isinstance(value, bool) else ""
        if s not in choices:
            raise SyntaxProblem(f"one of {', '.join(choices)} is expected, not {value!r}")
        return s
    return parse


def string_list(value: Any) -> tuple[str, ...]:
    """A YAML sequence of strings, or one string with `:`-separated items."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(x.strip() for x in value.split(":") if x.strip())
    if isinstance(value, list) and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in value):
        return tuple(str(x) for x in value)
    raise SyntaxProblem("a list of strings is expected")
