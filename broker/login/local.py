"""The ``local`` connector: accounts kept on the kernel with scrypt password hashes.

For small nodes and the demo. An account is a broker identity plus a link
``{iss: <issuer>login/<connector>, sub: <user name>}`` and a ``local-account`` record with
the password's hash, written together in one transaction (:meth:`IdentityService.register`).
A failed login costs the same scrypt time whether or not the user exists.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
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


class NoSuchAccount(BrokerError, LookupError):
    """No local account of that user name on that connector; nothing was changed."""

    status = 404
    code = "no_such_account"


@dataclass(frozen=True)
class AccountView:
    """What ``users list`` shows of a local account: never its password hash."""

    connector: str
    username: str
    identity_id: str
    display_name: str
    email: str


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
        _check_password(password)
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

    def accounts(self, connector_id: str | None = None) -> list[AccountView]:
        """Every local account (of ``connector_id`` when given), by connector and user name.

        Accounts the first release kept as tickets are listed too (they are moved at their
        next login or password change).
        """
        found: dict[tuple[str, str], LocalAccount] = {}
        for account in self._accounts.scan():
            found[(account.connector, account.username)] = account
        for item in self._kernel.scan(LEGACY_KIND):
            connector, _, username = item.key.partition(":")
            legacy = item.value
            if isinstance(legacy.get("identity_id"), str) and isinstance(legacy.get("hash"), str):
                found.setdefault((connector, username), LocalAccount(connector, username, legacy["identity_id"], ""))
        out = []
        for (connector, username), account in sorted(found.items()):
            if connector_id is not None and connector != connector_id:
                continue
            person = self._identities.get(account.identity_id)
            name, email = (person.display_name, person.email) if person is not None else ("", "")
            out.append(AccountView(connector, username, account.identity_id, name, email))
        return out

    def set_password(self, connector_id: str, username: str, password: str, *, now: int | None = None) -> str:
        """Replace the password of an existing account (audited); returns the account's identity id."""
        now = int(time.time()) if now is None else now
        _check_password(password)
        if self.get(connector_id, username) is None:  # also moves a first-release account
            raise NoSuchAccount(f"no local user {username!r} on connector {connector_id!r}")
        hashed = hash_secret(password)

        def run(tx: Tx) -> str:
            accounts = self._accounts.in_tx(tx)
            current = accounts.get(key_of(connector_id, username))
            if current is None:
                raise NoSuchAccount(f"no local user {username!r} on connector {connector_id!r}")
            accounts.put(LocalAccount(connector_id, username, current.identity_id, hashed))
            event = {"event": "login.password_changed", "connector": connector_id, "username": username}
            tx.audit({**event, "identity_id": current.identity_id}, now)
            return current.identity_id

        identity_id: str = self._kernel.transact(run)
        return identity_id

    def remove(self, connector_id: str, username: str, *, now: int | None = None) -> str:
        """Delete the local login (password and link) of an existing account, audited; returns its identity id.

        The broker account stays: its DAC grants, other linked identities and audit trail name
        it, and a grant must be revoked by its DAC, not by deleting the person.
        """
        now = int(time.time()) if now is None else now
        if self.get(connector_id, username) is None:
            raise NoSuchAccount(f"no local user {username!r} on connector {connector_id!r}")
        iss = self.link_issuer(connector_id)

        def run(tx: Tx) -> str:
            accounts = self._accounts.in_tx(tx)
            current = accounts.get(key_of(connector_id, username))
            if current is None:
                raise NoSuchAccount(f"no local user {username!r} on connector {connector_id!r}")
            accounts.delete(key_of(connector_id, username))
            self._identities.unlink_in(tx, current.identity_id, iss, username)
            event = {"event": "login.account_removed", "connector": connector_id, "username": username}
            tx.audit({**event, "identity_id": current.identity_id}, now)
            return current.identity_id

        identity_id: str = self._kernel.transact(run)
        return identity_id

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


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(f"password must be {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters")


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
