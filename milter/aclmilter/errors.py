"""Exceptions with source locations; every policy error carries file:line:column."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mark:
    """A position in a policy file (1-based line and column, as editors show them)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def shifted(self, offset: int) -> "Mark":
        """Return the mark `offset` characters further on the same line (for errors inside a value)."""
        return Mark(self.file, self.line, self.column + offset)


UNKNOWN_MARK = Mark("<unknown>", 0, 0)


class PolicyError(Exception):
    """One mistake in a policy, reported as `file:line:column: message`."""

    def __init__(self, mark: Mark, message: str) -> None:
        super().__init__(f"{mark}: {message}")
        self.mark = mark
        self.message = message


class PolicyErrors(Exception):
    """All mistakes found in a policy; the policy is refused as a whole."""

    def __init__(self, errors: list[PolicyError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.mark.file, e.mark.line, e.mark.column))
        super().__init__("\n".join(str(e) for e in self.errors))


class SyntaxProblem(ValueError):
    """A mini-language parse error at a character offset inside one value (converted to PolicyError)."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


class ExpansionFailed(Exception):
    """A string expansion failed (not forced): unknown variable, bad number, ... -> ERROR."""


class ForcedFail(Exception):
    """The expansion hit an unbraced `fail` (Exim forced failure)."""


class LookupDefer(Exception):
    """A lookup (file, Redis, DNS) could not be done now -> the condition DEFERs."""


class FileUnreadable(Exception):
    """A list or lookup file named by the policy cannot be opened. The statement ends in
    ERROR (451), even under `warn`: Exim's lookup code treats this as a configuration
    failure and ends the session, so nothing may be accepted because of it. Lists and
    expansions let it through instead of turning it into DEFER."""
