"""The ``local`` connector: accounts kept on the kernel with scrypt password hashes.

For small nodes and the demo. An account is a broker identity plus a link
``{iss: <issuer>login/<connector>, sub: <user name>}`` and a ``local-account`` record with
the password's hash, written together in one transaction (:meth:`IdentityService.register`).
A failed login costs the same scrypt time whether or not the user exists.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from broker.errors import BrokerError
from broker.identity.records import Identity
from broker.identity.service import IdentityService, LinkRefused, Profile
from broker.login.records import LOCAL_ACCOUNTS, LocalAccount
from broker.oidc.passwords import hash_secret, verify_secret
from broker.store.kernel import Kernel, Tx, key_of
from broker.store.records import Records

if TYPE_CHECKING:
    from broker.settings import Settings

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
LEGACY_KIND = "ticket:local_account"  # where the first release kept accounts
_DUMMY_HASH = "scrypt$14$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


class AccountError(BrokerError, ValueError):
    """A local account cannot be created as asked."""

    status = 400
    code = "invalid_account"


class LocalAccounts:
    """Local password logins of the connectors of kind ``local``."""

    def __init__(self, kernel: Kernel, identities: IdentityService, issuer: str) -> None:
        self._kernel = kernel
        self._accounts = Records(kernel, LOCAL_ACCOUNTS)
        self._identities = identities
        self._issuer = issuer

    def link_issuer(self, connector_id: str) -> str:
        """The ``iss`` of a local account's identity link."""
        return f"{self._issuer.rstrip('/')}/login/{connector_id}"

    def add(
        self,
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
        if self.get(connector_id, username) is not None:
            raise AccountError(f"user {username!r} already exists")
        hashed = hash_secret(password)

        def also(tx: Tx, identity: Identity) -> None:
            accounts = self._accounts.in_tx(tx)
            if accounts.get(key_of(connector_id, username)) is not None:
                raise AccountError(f"user {username!r} already exists")
            accounts.put(LocalAccount(connector_id, username, identity.id, hashed))

        profile = Profile(display_name=display_name or username, email=email)
        try:
            return self._identities.register(self.link_issuer(connector_id), username, connector_id, profile, now, also)
        except LinkRefused:
            raise AccountError(f"user {username!r} already exists") from None

    def get(self, connector_id: str, username: str) -> LocalAccount | None:
        """The account, reading (and moving) one the first release kept as a ticket."""
        found = self._accounts.get(key_of(connector_id, username))
        if found is not None:
            return found
        legacy: dict[str, Any] | None = self._kernel.get(LEGACY_KIND, f"{connector_id}:{username}")
        if legacy is None or not isinstance(legacy.get("identity_id"), str) or not isinstance(legacy.get("hash"), str):
            return None
        moved = LocalAccount(connector_id, username, legacy["identity_id"], legacy["hash"])
        self._accounts.add(moved)
        return moved

    def check_password(self, connector_id: str, username: str, password: str) -> str | None:
        """The identity id if the password is right, else None (same cost either way)."""
        if not USERNAME.fullmatch(username or "") or not password or len(password) > MAX_PASSWORD_CHARS:
            verify_secret("x", _DUMMY_HASH)
            return None
        account = self.get(connector_id, username)
        if account is None:
            verify_secret(password, _DUMMY_HASH)
            return None
        return account.identity_id if verify_secret(password, account.hash) else None


def add_user(
    settings: Settings,
    store: Any,
    connector_id: str,
    username: str,
    password: str,
    *,
    display_name: str = "",
    email: str = "",
    now: int | None = None,
) -> Identity:
    """Old entry point (tests and tools of other areas): :meth:`LocalAccounts.add` on ``store.kernel``."""
    kernel: Kernel = store.kernel
    accounts = LocalAccounts(kernel, IdentityService(kernel), settings.issuer)
    return accounts.add(connector_id, username, password, display_name=display_name, email=email, now=now)
