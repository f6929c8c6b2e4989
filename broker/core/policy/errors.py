"""Mistakes in policy files, reported as file, line, field and what was expected.

A data controller reads these messages, so each says where the mistake is (file and line
from PyYAML's node marks, the dotted field path inside the file) and what would have been
right. Loading collects every mistake it can find in one pass and raises them together as
:class:`PolicyLoadError`, so ``policy check`` lists all of them at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.errors import BrokerError


@dataclass(frozen=True)
class PolicyError(BrokerError):
    """One mistake: where (file, 1-based line and column, field path) and what was expected."""

    status = 400
    code = "policy_error"

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
        }


class PolicyLoadError(BrokerError):
    """A policy directory that cannot be used; ``errors`` lists every mistake found."""

    status = 500
    code = "policy_load_error"

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors: tuple[PolicyError, ...] = tuple(errors)
        count = len(self.errors)
        head = str(self.errors[0]) if self.errors else "no policy could be loaded"
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(head + more)

    def report(self) -> str:
        """Every mistake, one per line, in file and line order."""
        return "\n".join(str(e) for e in self.errors)
