"""Errors the web layer turns into clear JSON answers: status, machine code, message.

Every refusal the broker gives a person or a program has the same shape:
``{"error": "<machine_code>", "message": "<sentence a person understands>"}``
plus optional extra members. No path answers 500 to malformed input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApiError(Exception):
    """Raise from any view: becomes a JSON error with this status and code."""

    status: int
    code: str
    message: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}
