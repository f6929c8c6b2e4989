"""What the OP keeps about each grant: one researcher's authorization of one client.

A grant starts when a code or a device code is redeemed. Its id is the refresh-token family
id and the ``grant`` claim of every access token it yields, so revoking the family ends
them all. The record says who authorized which client, when (``authorized_ms``: the moment
the researcher said yes, which consent withdrawal is compared with), and until when its
refresh tokens may live at most (``expires_at``: the absolute lifetime, RFC 9700 4.14.2).

It lives in the store's ticket space (kind ``oidc_grant``) until the last access token the
grant can have produced has expired; a missing record is a dead grant (fail closed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from broker.store.base import Store

if TYPE_CHECKING:
    from broker.settings import Settings

GRANT_KIND = "oidc_grant"


@dataclass(frozen=True)
class GrantRecord:
    """One grant. Times are epoch seconds, except ``authorized_ms`` (milliseconds)."""

    grant_id: str
    identity_id: str
    client_id: str
    scope: tuple[str, ...]
    authorized_ms: int
    started_at: int
    expires_at: int


def put_grant_record(settings: Settings, store: Store, record: GrantRecord) -> None:
    """Keep ``record`` until its last access token can have expired."""
    ttl = max(1, record.expires_at - record.started_at) + settings.oidc.access_token_lifetime_seconds
    store.put_ticket(GRANT_KIND, record.grant_id, {**asdict(record), "scope": list(record.scope)}, ttl)


def get_grant_record(store: Store, grant_id: str) -> GrantRecord | None:
    """The record of ``grant_id``, or None if it is unknown, over or malformed."""
    data: dict[str, Any] | None = store.peek_ticket(GRANT_KIND, grant_id)
    if data is None:
        return None
    try:
        record = GrantRecord(
            grant_id=str(data["grant_id"]),
            identity_id=str(data["identity_id"]),
            client_id=str(data["client_id"]),
            scope=tuple(str(s) for s in data["scope"]),
            authorized_ms=int(data["authorized_ms"]),
            started_at=int(data["started_at"]),
            expires_at=int(data["expires_at"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return record if record.grant_id == grant_id else None
