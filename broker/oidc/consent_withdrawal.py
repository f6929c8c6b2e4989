"""Withdrawing a researcher's consent for a client ends every grant given to it before (OA-20 case 5).

The account page calls :func:`withdraw_consent`. It does not look for the client's grants
one by one (the store has no index of grants by researcher and client); it writes one
marker, ``(researcher, client) -> withdrawn at <ms>``, and deletes the remembered consent.
Every place that honours a grant then compares the marker with the moment that grant was
authorized (``GrantRecord.authorized_ms``, or a code's or device approval's own time):
- the refresh grant refuses with ``invalid_grant`` and revokes the family;
- access tokens are refused wherever they are checked (``tokens.verify_access_token``),
  and introspect as ``{"active": false}``;
- a code or device code approved before the withdrawal cannot be redeemed after it.
Grants authorized after the withdrawal (the researcher consents again) are not touched.

The marker is written before the consent is deleted, so a crash in between leaves the
consent listed (the researcher tries again) but never a grant alive. It lives as long as
any grant authorized before it can (absolute refresh lifetime, plus the wait of a code or
device code before redemption, plus one access-token lifetime).

Milliseconds, not seconds: a researcher who withdraws and consents again within the same
second must get a working grant. Clocks of different machines must agree to well under the
time a person takes to consent again; a grant authorized on a clock running behind is
treated as older, which fails closed.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

from broker.store.base import Store

if TYPE_CHECKING:
    from broker.settings import Settings

WITHDRAWN_KIND = "consent_withdrawn"
MARKER_MARGIN_SECONDS = 300  # clock leeway on top of the computed lifetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _key(identity_id: str, client_id: str) -> str:
    return hashlib.sha256(f"{identity_id}\x00{client_id}".encode()).hexdigest()


def marker_lifetime(settings: Settings) -> int:
    """How long a withdrawal marker must outlive the withdrawal (see the module docstring)."""
    oidc = settings.oidc
    return (
        oidc.refresh_token_lifetime_seconds
        + max(oidc.code_lifetime_seconds, oidc.device_code_lifetime_seconds)
        + oidc.access_token_lifetime_seconds
        + MARKER_MARGIN_SECONDS
    )


def withdraw_consent(
    settings: Settings, store: Store, identity_id: str, client_id: str, at_ms: int | None = None
) -> bool:
    """End every grant ``identity_id`` gave ``client_id`` until now, and forget the remembered consent.

    Returns whether a remembered consent was deleted. Writes an audit record either way.
    """
    at_ms = now_ms() if at_ms is None else at_ms
    key = _key(identity_id, client_id)
    previous = store.peek_ticket(WITHDRAWN_KIND, key)
    if previous is not None and isinstance(previous.get("at_ms"), int):
        at_ms = max(at_ms, previous["at_ms"])  # never move the line back
    store.put_ticket(WITHDRAWN_KIND, key, {"at_ms": at_ms}, marker_lifetime(settings))
    deleted = store.delete_consent(identity_id, client_id)
    store.audit_append(
        {"event": "oidc.consent_withdrawn", "identity_id": identity_id, "client_id": client_id}, at_ms // 1000
    )
    return deleted


def withdrawn_at_ms(store: Store, identity_id: str, client_id: str) -> int | None:
    """When consent of ``identity_id`` for ``client_id`` was last withdrawn (ms), if it was."""
    marker = store.peek_ticket(WITHDRAWN_KIND, _key(identity_id, client_id))
    if marker is None:
        return None
    at_ms = marker.get("at_ms")
    # A marker we cannot read withdraws everything (fail closed).
    return at_ms if isinstance(at_ms, int) and not isinstance(at_ms, bool) else 2**62


def authorization_withdrawn(store: Store, identity_id: str, client_id: str, authorized_ms: int) -> bool:
    """True if consent was withdrawn at or after ``authorized_ms``."""
    at_ms = withdrawn_at_ms(store, identity_id, client_id)
    return at_ms is not None and authorized_ms <= at_ms
