"""The ``Store`` protocol: every record the broker keeps, one contract for every backend.

Backends (``sqlite.py``, ``redis.py``) implement exactly this protocol and are proven
by one contract suite (``tests/store/``). Callers depend on this module only.

Conventions every backend keeps:
- times are integer seconds since the Unix epoch (``now`` is passed in where it
  matters, so tests control the clock);
- single-use records are consumed atomically: of two concurrent ``consume_ticket``
  calls for one key, exactly one gets the record;
- records with a lifetime (tickets, sessions, revoked token ids) vanish on their own
  when it ends, and are never returned after it;
- an unreachable backend raises :class:`StoreUnavailable` (the web layer answers 503);
- secrets are never stored in the clear: callers hand in hashes (client secrets,
  refresh tokens) or ciphertext (private keys).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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
class Identity:
    """A broker account: our ``sub``. Upstream identities link to it (``IdentityLink``)."""

    id: str
    created_at: int
    display_name: str = ""
    email: str = ""  # shown to DAC members; never used to link accounts


@dataclass(frozen=True)
class IdentityLink:
    """An upstream identity ``{iss, sub}`` that belongs to a broker account."""

    identity_id: str
    iss: str
    sub: str
    linked_at: int
    connector: str = ""  # which login connector it came through


@dataclass(frozen=True)
class Grant:
    """A DAC's decision that a researcher may access a dataset."""

    id: str
    identity_id: str
    dataset: str
    dac: str
    granted_by: str
    granted_at: int  # becomes the visa's `asserted`
    start: int
    end: int
    reason: str = ""
    revoked_at: int | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    def live(self, now: int) -> bool:
        return self.revoked_at is None and self.start <= now < self.end


@dataclass(frozen=True)
class Client:
    """An OAuth client. ``secret_hash`` is a password hash, never the secret itself."""

    client_id: str
    name: str
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    scopes: tuple[str, ...] = ("openid",)
    auth_method: str = "client_secret_basic"  # or client_secret_post, private_key_jwt, none
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None  # for private_key_jwt
    post_logout_redirect_uris: tuple[str, ...] = ()
    created_at: int = 0

    @property
    def public(self) -> bool:
        return self.auth_method == "none"


@dataclass(frozen=True)
class RefreshToken:
    """One refresh token of a rotation family; looked up by the token's hash."""

    token_hash: str
    family_id: str
    identity_id: str
    client_id: str
    scope: str
    issued_at: int
    expires_at: int
    used: bool = False


@dataclass(frozen=True)
class Consent:
    """A researcher's remembered consent for a client (opt-in, withdrawable)."""

    identity_id: str
    client_id: str
    scopes: tuple[str, ...]
    granted_at: int


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


@runtime_checkable
class Store(Protocol):
    """Everything the broker keeps (the first release's protocol; served by ``broker.store.legacy``)."""

    backend: str

    # lifecycle
    def health(self) -> Health: ...
    def close(self) -> None: ...

    # identities and their upstream links
    def put_identity(self, identity: Identity) -> None: ...
    def get_identity(self, identity_id: str) -> Identity | None: ...
    def link_identity(self, link: IdentityLink) -> None: ...  # Conflict if {iss, sub} is linked elsewhere
    def find_link(self, iss: str, sub: str) -> IdentityLink | None: ...
    def links_of(self, identity_id: str) -> list[IdentityLink]: ...

    # DAC grants
    def put_grant(self, grant: Grant) -> None: ...  # insert or replace by id
    def get_grant(self, grant_id: str) -> Grant | None: ...
    def grants_of(self, identity_id: str) -> list[Grant]: ...
    def grants_for_dataset(self, dataset: str) -> list[Grant]: ...

    # OAuth clients
    def put_client(self, client: Client) -> None: ...
    def get_client(self, client_id: str) -> Client | None: ...
    def list_clients(self) -> list[Client]: ...
    def delete_client(self, client_id: str) -> bool: ...

    # single-use tickets (authorization codes, device codes, login state, jti replay ...)
    def put_ticket(self, kind: str, key: str, value: dict[str, Any], ttl: int) -> None: ...
    def add_ticket(self, kind: str, key: str, value: dict[str, Any], ttl: int) -> bool: ...  # False if it exists
    def consume_ticket(self, kind: str, key: str) -> dict[str, Any] | None: ...
    def peek_ticket(self, kind: str, key: str) -> dict[str, Any] | None: ...

    # refresh-token families
    def put_refresh_token(self, token: RefreshToken) -> None: ...
    # atomically marks the token used and returns its state from before the call
    def use_refresh_token(self, token_hash: str) -> RefreshToken | None: ...
    def revoke_family(self, family_id: str) -> int: ...
    def family_revoked(self, family_id: str) -> bool: ...

    # sessions (server-side; the cookie holds only the id)
    def put_session(self, session_id: str, data: dict[str, Any], ttl: int) -> None: ...
    def get_session(self, session_id: str) -> dict[str, Any] | None: ...
    def delete_session(self, session_id: str) -> None: ...

    # consents
    def put_consent(self, consent: Consent) -> None: ...
    def get_consent(self, identity_id: str, client_id: str) -> Consent | None: ...
    def consents_of(self, identity_id: str) -> list[Consent]: ...
    def delete_consent(self, identity_id: str, client_id: str) -> bool: ...

    # revoked token ids (until the token's own exp)
    def revoke_token_id(self, jti: str, expires_at: int) -> None: ...
    def is_token_revoked(self, jti: str) -> bool: ...

    # append-only, hash-chained audit log
    def audit_append(self, event: dict[str, Any], at: int) -> AuditRecord: ...
    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]: ...
    def audit_last_seq(self) -> int: ...  # seq of the newest record, 0 when empty; O(1), no scan
