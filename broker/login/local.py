"""The ``local`` connector: accounts kept in the store with scrypt password hashes.

For small nodes and the demo. An account is a broker identity plus a link
``{iss: <issuer>login/<connector>, sub: <username>}``; its password hash is kept in the
store's ticket space (kind ``local_account``) until the store grows a dedicated method.
A failed login costs the same scrypt time whether or not the user exists.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING

from broker.errors import BrokerError
from broker.oidc.passwords import hash_secret, verify_secret
from broker.store.base import Conflict, Identity, IdentityLink, Store

if TYPE_CHECKING:
    from broker.settings import Settings

ACCOUNT_KIND = "local_account"
ACCOUNT_TTL = 100 * 365 * 86400  # accounts do not expire; the ticket space needs a lifetime
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
_DUMMY_HASH = "scrypt$14$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


class AccountError(BrokerError, ValueError):
    """A local account cannot be created as asked."""

    status = 400
    code = "invalid_account"


def link_issuer(settings: Settings, connector_id: str) -> str:
    """The ``iss`` of a local account's identity link."""
    return f"{settings.issuer.rstrip('/')}/login/{connector_id}"


def add_user(
    settings: Settings,
    store: Store,
    connector_id: str,
    username: str,
    password: str,
    *,
    display_name: str = "",
    email: str = "",
    now: int | None = None,
) -> Identity:
    """Create a broker identity with a local password login."""
    now = int(time.time()) if now is None else now
    if not USERNAME.fullmatch(username):
        raise AccountError("user name must be 1-128 letters, digits, '.', '_', '@' or '-'")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(f"password must be {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters")
    if store.peek_ticket(ACCOUNT_KIND, f"{connector_id}:{username}") is not None:
        raise AccountError(f"user {username!r} already exists")
    identity = Identity(id=secrets.token_hex(16), created_at=now, display_name=display_name or username, email=email)
    store.put_identity(identity)
    try:
        store.link_identity(
            IdentityLink(
                identity_id=identity.id,
                iss=link_issuer(settings, connector_id),
                sub=username,
                linked_at=now,
                connector=connector_id,
            )
        )
    except Conflict:
        raise AccountError(f"user {username!r} already exists") from None
    if not store.add_ticket(
        ACCOUNT_KIND,
        f"{connector_id}:{username}",
        {"identity_id": identity.id, "hash": hash_secret(password)},
        ACCOUNT_TTL,
    ):
        raise AccountError(f"user {username!r} already exists")
    return identity


def check_password(store: Store, connector_id: str, username: str, password: str) -> str | None:
    """The identity id if the password is right, else None (same cost either way)."""
    if not USERNAME.fullmatch(username or "") or not password or len(password) > MAX_PASSWORD_CHARS:
        verify_secret("x", _DUMMY_HASH)
        return None
    account = store.peek_ticket(ACCOUNT_KIND, f"{connector_id}:{username}")
    if account is None:
        verify_secret(password, _DUMMY_HASH)
        return None
    if not verify_secret(password, account.get("hash")):
        return None
    return str(account["identity_id"])
