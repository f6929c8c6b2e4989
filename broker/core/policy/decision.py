"""The answer of the policy engine: allow or deny, with its expiry, basis and reasons.

Reasons are data (DESIGN rule 2): every unmet requirement yields a :class:`DenyReason` whose
``code`` a program can act on and whose ``message`` a person can read; the same records reach
the audit log, the API and ``policy explain``. Reasons and basis entries are named tuples:
immutable like the rest, and cheap to build on the hot path (a frozen dataclass costs about a
microsecond per object, which a 20-visa decision would pay many times over). The basis says which visas (by ``jti`` and
issuer) satisfied which requirement, for audit, and includes the LinkedIdentities visas that
linked them and the visas that met their conditions: the effective expiry is the minimum over
all of them (Passport 1.2, "Visa Expiry": several visas).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from broker.core.models import Visa


class Code(StrEnum):
    """Machine-readable deny reasons."""

    UNKNOWN_DATASET = "unknown_dataset"  # no dataset or template covers this id
    AMBIGUOUS_DATASET = "ambiguous_dataset"  # several templates cover it (never by loaded rules)
    UNKNOWN_ACTION = "unknown_action"  # the dataset grants no such action
    HOLDER_UNKNOWN = "holder_unknown"  # visas of several identities and no holder given
    MISSING_VISA = "missing_visa"  # no usable visa of the required type at all
    NO_MATCHING_VISA = "no_matching_visa"  # visas of the type, none with matching fields/issuer
    NOT_LINKED = "not_linked"  # a matching visa of an identity not linked to the holder
    CONDITIONS_UNMET = "conditions_unmet"  # a matching visa whose own conditions are not met
    EXPIRED = "expired"  # a matching visa whose exp has passed
    EXPIRES_TOO_SOON = "expires_too_soon"  # valid now, but not for the requested duration
    ASSERTION_TOO_OLD = "assertion_too_old"  # asserted + max_assertion_age has passed
    GRANT_REVOKED = "grant_revoked"  # no usable visa, but the holder had one from a decision since revoked
    PURPOSE_MISSING = "purpose_missing"  # the dataset has data use terms, no purpose declared
    PURPOSE_UNKNOWN = "purpose_unknown"
    PURPOSE_INCOMPATIBLE = "purpose_incompatible"
    INTERNAL_ERROR = "internal_error"  # an exception in evaluation: fail closed


class DenyReason(NamedTuple):
    """Why a requirement (``requirement`` = its id, e.g. ``read.any_of[0]``) is not met."""

    code: str
    message: str
    requirement: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.requirement is not None:
            out["requirement"] = self.requirement
        return out


class Withdrawn(NamedTuple):
    """A visa the holder would hold but for a revocation: the visa a revoked decision (a DAC
    grant) gave, when it was revoked, and what it was, in a few words for the deny reason.

    Only the deny path reads these: a requirement that no visa meets, but that this visa would
    have met, is denied ``grant_revoked`` instead of ``missing_visa`` / ``no_matching_visa``, so
    the researcher learns that access was withdrawn, not that it was never given. They never
    count toward an allow.
    """

    visa: Visa
    revoked_at: int
    what: str


class Basis(NamedTuple):
    """One visa used by an allow: for which requirement, and as what.

    ``use`` is ``grant`` (it met the requirement), ``link`` (a LinkedIdentities visa linking it
    to the holder) or ``condition`` (it met the visa's conditions).
    """

    requirement: str
    use: str
    type: str
    iss: str
    jti: str | None
    value: str
    exp: int

    def to_json(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement,
            "use": self.use,
            "type": self.type,
            "iss": self.iss,
            "jti": self.jti,
            "value": self.value,
            "exp": self.exp,
        }


@dataclass(frozen=True)
class Decision:
    """Allow or deny for one dataset and action; ``expires_at`` is set only on allow."""

    allow: bool
    dataset: str
    action: str
    expires_at: int | None
    basis: tuple[Basis, ...]
    reasons: tuple[DenyReason, ...]
    policy_version: str
    purpose: str | None = None
    entry: str | None = None  # which dataset or template entry decided, and where it is written

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(reason.code for reason in self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {
            "allow": self.allow,
            "dataset": self.dataset,
            "action": self.action,
            "purpose": self.purpose,
            "expires_at": self.expires_at,
            "basis": [b.to_json() for b in self.basis],
            "reasons": [r.to_json() for r in self.reasons],
            "policy_version": self.policy_version,
            "entry": self.entry,
        }


def when(epoch: int | None) -> str:
    """An epoch time for people: ``2025-01-31 12:00:00Z (1738324800)``."""
    if epoch is None:
        return "-"
    try:
        stamp = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        stamp = "out of range"
    return f"{stamp} ({epoch})"


def duration(seconds: int) -> str:
    """``31536000`` -> ``365d``; the largest unit that divides it exactly."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
