"""What every store backend shares: its errors, the audit record types and the health report.

The kernel itself is :mod:`broker.store.kernel`; the areas keep their own record types on it.
Secrets are never stored in the clear: callers hand in hashes (client secrets, refresh tokens)
or ciphertext (private keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.errors import BrokerError, Unavailable


class StoreError(BrokerError):
    """Base class of store errors: the store answered, but not with something usable (500)."""

    status = 500
    code = "store_error"


class StoreUnavailable(StoreError, Unavailable):
    """The backend cannot be reached or did not answer in time (fail closed: 503).

    ``str()`` keeps the backend's detail for the log; the answer to a client says only
    that the store cannot be reached.
    """

    status = 503
    code = "store_unavailable"

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": "The broker's store cannot be reached; try again shortly."}


class Conflict(StoreError):
    """A record with that key already exists where the caller asked for a new one."""

    status = 409
    code = "conflict"


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the hash-chained audit log."""

    seq: int
    at: int
    event: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditProblem:
    """What ``audit verify`` found wrong, at which record."""

    seq: int
    problem: str  # machine-readable: hash_mismatch, chain_broken, gap, ...
    detail: str = ""


@dataclass
class Health:
    """What ``/readyz`` and the start-up checks report about the backend."""

    ok: bool
    backend: str
    warnings: list[str] = field(default_factory=list)
