"""Error types of the methodology engine."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InvalidActionError", "MethodologyError", "NoMethodologyError", "Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One precise problem in a methodology document.

    ``path`` is the field path inside the document (``formula[1].expr``); ``line`` and ``column``
    are 1-based positions in the file (for formulas, of the offending token), or 0 when unknown.
    """

    file: str
    path: str
    message: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path or '<document>'}: {self.message}"


class MethodologyError(ValueError):
    """A methodology document (or a set of them) is invalid; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class NoMethodologyError(LookupError):
    """No methodology version is in force for an action type, region and time."""


class InvalidActionError(ValueError):
    """An action is malformed (wrong action type, wrong value type, a float): a caller's bug or a
    bad request, not an outcome to record."""
