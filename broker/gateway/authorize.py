"""The one question the gateway asks: may this bearer read this object of this dataset?

The gateway enforces; it does not decide. Whoever builds the app injects an
:class:`Authorizer` (the passport/access-token one in ``passport_authorizer.py``, or a
table in tests) and every route (streaming, offload, decision endpoint, DRS) asks it the
same question with the same canonical object key, so the modes cannot disagree.

Contract for implementations (fail closed, DESIGN rule 1): never raise for a bad token or
a deny, return a decision; an exception escaping ``authorize`` is turned into a 503
denial by the gateway, never an allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# Reason codes the gateway itself produces (authorizers add their own, e.g. policy reasons).
MISSING_TOKEN = "missing_token"
INVALID_TOKEN = "invalid_token"
AUTHORIZER_FAILED = "authorizer_failed"
SIGNED_URL = "signed_url"


@dataclass(frozen=True)
class AccessDecision:
    """The verdict on one request, with what the audit log and the client need to know.

    ``status`` is the HTTP status for a denial (401 missing/bad credentials, 403 no
    access, 503 the decision could not be made); 200 for an allow. ``reason`` is a machine
    code, ``message`` a sentence for the client. ``expires_at`` bounds how long the allow
    may be relied on (token or visa expiry). ``required`` is the policy's "what would grant
    access" document, shown on 403 when settings allow.
    """

    allow: bool
    status: int
    reason: str
    message: str
    subject: str | None = None
    expires_at: int | None = None
    visas_used: tuple[str, ...] = ()
    basis: Any = None
    required: dict[str, Any] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def allowed(
        subject: str | None,
        reason: str = "allowed",
        message: str = "Access granted.",
        *,
        expires_at: int | None = None,
        visas_used: Sequence[str] = (),
        basis: Any = None,
    ) -> AccessDecision:
        return AccessDecision(True, 200, reason, message, subject, expires_at, tuple(visas_used), basis)

    @staticmethod
    def denied(
        status: int,
        reason: str,
        message: str,
        *,
        subject: str | None = None,
        required: dict[str, Any] | None = None,
        basis: Any = None,
    ) -> AccessDecision:
        if status not in (401, 403, 503):
            raise ValueError(f"a denial is 401, 403 or 503, not {status}")
        return AccessDecision(False, status, reason, message, subject, None, (), basis, required)


class Authorizer(Protocol):
    """Decides one access. ``bearer`` is the Authorization Bearer value (None when absent);
    ``passports`` are passport JWTs handed in a DRS POST body (empty otherwise)."""

    def authorize(
        self, bearer: str | None, dataset: str, object_path: str, action: str = "read", *, passports: Sequence[str] = ()
    ) -> AccessDecision: ...
