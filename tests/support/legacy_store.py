"""A test-data facade over the store kernel: the first release's typed store methods.

Tests seed and inspect records with it (``put_identity``, ``put_grant``, ``get_client``...). Each
method writes typed records of the areas (kinds ``identity``, ``identity-link``, ``grant``,
``client``, ``refresh-token``, ``revoked-family``, ``session``, ``consent``, ``revoked-jti`` and
``ticket:<kind>``) in exactly the layout the areas' own repositories use, so what a test seeds
here is what the broker reads. The broker itself never uses this module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from broker.dac.records import Grant
from broker.identity.records import Identity, IdentityLink
from broker.oidc.records import Client, Consent, RefreshToken
from broker.store import open_kernel
from broker.store.base import AuditRecord, Conflict, Health
from broker.store.kernel import Kernel, Tx, Write, check_name, key_of
from broker.store.records import Records, RecordType

FAMILY_MARKER_MIN_SECONDS = 3600

IDENTITIES = RecordType("identity", Identity, key=lambda i: i.id)
LINKS = RecordType(
    "identity-link",
    IdentityLink,
    key=lambda link: key_of(link.iss, link.sub),
    terms=lambda link: (f"identity:{link.identity_id}",),
)
GRANTS = RecordType(
    "grant", Grant, key=lambda g: g.id, terms=lambda g: (f"identity:{g.identity_id}", f"dataset:{g.dataset}")
)
CLIENTS = RecordType("client", Client, key=lambda c: c.client_id)
REFRESH_TOKENS = RecordType(
    "refresh-token",
    RefreshToken,
    key=lambda t: t.token_hash,
    terms=lambda t: (f"family:{t.family_id}",),
    expires=lambda t: t.expires_at,
)
CONSENTS = RecordType(
    "consent", Consent, key=lambda c: key_of(c.identity_id, c.client_id), terms=lambda c: (f"identity:{c.identity_id}",)
)


def check_ttl(ttl: Any) -> int:
    """A lifetime is a whole number of seconds greater than 0."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError(f"ttl must be a whole number of seconds greater than 0, got {ttl!r}")
    return ttl


def family_marker_until(now: int, latest_expiry: int | None) -> int:
    """Until when a revoked refresh-token family stays marked revoked."""
    return max(int(latest_expiry or 0), now + FAMILY_MARKER_MIN_SECONDS)


class LegacyStore:
    """The typed protocol of the first release on a kernel (see the module docstring)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.backend = kernel.backend
        self.identities = Records(kernel, IDENTITIES)
        self.links = Records(kernel, LINKS)
        self.grants = Records(kernel, GRANTS)
        self.clients = Records(kernel, CLIENTS)
        self.refresh_tokens = Records(kernel, REFRESH_TOKENS)
        self.consents = Records(kernel, CONSENTS)

    # lifecycle
    def health(self) -> Health:
        return self.kernel.health()

    def close(self) -> None:
        self.kernel.close()

    def __getattr__(self, name: str) -> Any:
        # Kernel-level helpers (purge_expired, fault hooks, path, ...) reach through.
        return getattr(self.kernel, name)

    # identities
    def put_identity(self, identity: Identity) -> None:
        check_name("identity id", identity.id)
        self.identities.put(identity)

    def get_identity(self, identity_id: str) -> Identity | None:
        return self.identities.get(identity_id)

    def link_identity(self, link: IdentityLink) -> None:
        check_name("identity id", link.identity_id)
        check_name("upstream iss", link.iss)
        check_name("upstream sub", link.sub)

        def run(tx: Tx) -> None:
            links = self.links.in_tx(tx)
            current = links.get(key_of(link.iss, link.sub))
            if current is not None and current.identity_id != link.identity_id:
                raise Conflict("this upstream identity {iss, sub} is already linked to another account")
            links.put(link)

        self.kernel.transact(run)

    def find_link(self, iss: str, sub: str) -> IdentityLink | None:
        if not iss or not sub:
            return None
        return self.links.get(key_of(iss, sub))

    def links_of(self, identity_id: str) -> list[IdentityLink]:
        return sorted(self.links.find(f"identity:{identity_id}"), key=lambda link: (link.linked_at, link.iss, link.sub))

    # grants
    def put_grant(self, grant: Grant) -> None:
        check_name("grant id", grant.id)
        self.grants.put(grant)

    def get_grant(self, grant_id: str) -> Grant | None:
        return self.grants.get(grant_id) if grant_id else None

    def grants_of(self, identity_id: str) -> list[Grant]:
        return sorted(self.grants.find(f"identity:{identity_id}"), key=lambda g: (g.granted_at, g.id))

    def grants_for_dataset(self, dataset: str) -> list[Grant]:
        return sorted(self.grants.find(f"dataset:{dataset}"), key=lambda g: (g.granted_at, g.id))

    # clients
    def put_client(self, client: Client) -> None:
        check_name("client id", client.client_id)
        self.clients.put(client)

    def get_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id) if client_id else None

    def list_clients(self) -> list[Client]:
        return list(self.clients.scan())

    def delete_client(self, client_id: str) -> bool:
        return self.clients.delete(client_id)

    # tickets
    def put_ticket(self, kind: str, key: str, value: dict[str, Any], ttl: int) -> None:
        check_name("ticket kind", kind)
        check_name("ticket key", key)
        self.kernel.put(f"ticket:{kind}", key, value, expires_at=int(time.time()) + check_ttl(ttl))

    def add_ticket(self, kind: str, key: str, value: dict[str, Any], ttl: int) -> bool:
        check_name("ticket kind", kind)
        check_name("ticket key", key)
        return self.kernel.add(f"ticket:{kind}", key, value, expires_at=int(time.time()) + check_ttl(ttl))

    def consume_ticket(self, kind: str, key: str) -> dict[str, Any] | None:
        if not isinstance(key, str) or not key:
            return None
        return self.kernel.take(f"ticket:{kind}", key)

    def peek_ticket(self, kind: str, key: str) -> dict[str, Any] | None:
        if not isinstance(key, str) or not key:
            return None
        return self.kernel.get(f"ticket:{kind}", key)

    # refresh tokens
    def put_refresh_token(self, token: RefreshToken) -> None:
        """Insert or replace; a token of a revoked family is not kept (revoked at birth)."""
        check_name("token hash", token.token_hash)
        check_name("family id", token.family_id)

        def run(tx: Tx) -> None:
            marker = tx.get("revoked-family", token.family_id)
            if marker is not None:
                until = max(int(marker["until"]), token.expires_at)
                tx.put("revoked-family", token.family_id, {"until": until}, expires_at=until)
                return
            self.refresh_tokens.in_tx(tx).put(token)

        self.kernel.transact(run)

    def use_refresh_token(self, token_hash: str) -> RefreshToken | None:
        """Atomically mark the token used; its state from before the call."""

        def run(tx: Tx) -> RefreshToken | None:
            tokens = self.refresh_tokens.in_tx(tx)
            current = tokens.get(token_hash)
            if current is None:
                return None
            if not current.used:
                tokens.put(replace(current, used=True))
            return current

        if not token_hash:
            return None
        return self.kernel.transact(run)

    def revoke_family(self, family_id: str) -> int:
        """Delete the family's tokens and mark it revoked; the number of live tokens removed."""
        check_name("family id", family_id)

        def run(tx: Tx) -> int:
            tokens = self.refresh_tokens.in_tx(tx)
            live = tokens.find(f"family:{family_id}")
            for token in live:
                tokens.delete(token.token_hash)
            marker = tx.get("revoked-family", family_id)
            latest = max([t.expires_at for t in live] + [int(marker["until"]) if marker else 0])
            until = family_marker_until(tx.now, latest)
            tx.put("revoked-family", family_id, {"until": until}, expires_at=until)
            return len(live)

        return self.kernel.transact(run)

    def family_revoked(self, family_id: str) -> bool:
        return bool(family_id) and self.kernel.get("revoked-family", family_id) is not None

    # sessions
    def put_session(self, session_id: str, data: dict[str, Any], ttl: int) -> None:
        check_name("session id", session_id)
        self.kernel.put("session", session_id, data, expires_at=int(time.time()) + check_ttl(ttl))

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        return self.kernel.get("session", session_id) if session_id else None

    def delete_session(self, session_id: str) -> None:
        if session_id:
            self.kernel.delete("session", session_id)

    # consents
    def put_consent(self, consent: Consent) -> None:
        check_name("identity id", consent.identity_id)
        check_name("client id", consent.client_id)
        self.consents.put(consent)

    def get_consent(self, identity_id: str, client_id: str) -> Consent | None:
        return self.consents.get(key_of(identity_id, client_id))

    def consents_of(self, identity_id: str) -> list[Consent]:
        return sorted(self.consents.find(f"identity:{identity_id}"), key=lambda c: c.client_id)

    def delete_consent(self, identity_id: str, client_id: str) -> bool:
        return self.consents.delete(key_of(identity_id, client_id))

    # revoked token ids
    def revoke_token_id(self, jti: str, expires_at: int) -> None:
        check_name("token id", jti)
        until = int(expires_at)

        def later(current: dict[str, Any] | None) -> Write:
            end = max(until, int(current["until"])) if current else until
            return Write({"until": end}, expires_at=end)

        self.kernel.update("revoked-jti", jti, later)

    def is_token_revoked(self, jti: str) -> bool:
        return bool(jti) and self.kernel.get("revoked-jti", jti) is not None

    # audit log
    def audit_append(self, event: dict[str, Any], at: int) -> AuditRecord:
        return self.kernel.audit_append(event, at)

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]:
        return self.kernel.audit_records(after_seq)

    def audit_last_seq(self) -> int:
        return self.kernel.audit_last_seq()


def open_store(settings: Any) -> LegacyStore:
    """The facade over the kernel the settings name (``settings.store``, ``settings.sqlite_path``)."""
    return LegacyStore(open_kernel(settings.store, settings.sqlite_path))


#: The name the broker's first release gave this facade.
Store = LegacyStore
