"""Errors of the DAC services: each carries the HTTP status and machine code the API answers with.

The services raise them; the command line prints them as one line and the REST API turns
them into ``{"error": code, "message": ..., ...}`` (the :class:`broker.errors.BrokerError` shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.errors import BrokerError


class DacError(BrokerError):
    """Base class of the DAC services' refusals (a :class:`~broker.errors.BrokerError`)."""

    def __init__(
        self, message: str, status: int = 400, code: str = "invalid_request", extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, status=status, code=code, extra=extra)


class Forbidden(DacError):
    """The actor may not do this (THREAT-MODEL GA-12); nothing was changed."""

    def __init__(self, message: str = "You are not allowed to do this.", extra: dict[str, Any] | None = None) -> None:
        super().__init__(message, 403, "forbidden", dict(extra or {}))


class NotFound(DacError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 404, "not_found")


class Conflict(DacError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 409, "conflict")


class ValidationError(DacError):
    """Bad input; ``fields`` maps a field name to what is wrong with it (UI-12)."""

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message, 400, "invalid_request", {"fields": dict(fields or {})})

    @property
    def fields(self) -> dict[str, str]:
        value: dict[str, str] = self.extra["fields"]
        return value


@dataclass(frozen=True)
class LineError:
    """One problem of a CSV import, at a 1-based line number of the file."""

    line: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}


class ImportRejected(DacError):
    """A CSV import with at least one bad line: nothing was imported."""

    def __init__(self, errors: list[LineError]) -> None:
        super().__init__(
            f"{len(errors)} line(s) of the import are wrong; nothing was imported",
            400,
            "import_rejected",
            {"lines": [e.to_json() for e in errors]},
        )
        self.errors = errors
