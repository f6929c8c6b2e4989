"""The OpenID Provider's records on the store kernel: one frozen dataclass and one ``RecordType`` each.

Kinds and keys (``H(x)`` is the SHA-256 hex of a secret we hand out and never store):

============================  ==============================  ==========================================
kind                          key                             what
============================  ==============================  ==========================================
``client``                    client_id                       a client added by ``clients add`` (*)
``oauth-grant``               grant id                        one researcher's authorization of a client
``authorization-code``        H(code)                         a code, taken once at redemption
``authorization-code-used``   H(code)                         which grant its redemption started
``refresh-token``             H(token), term ``family:<id>``  a refresh token of a grant's family (*)
``revoked-family``            grant id                        ``{"until": t}`` a revoked grant (*)
``revoked-jti``               access token jti                ``{"until": t}`` a revoked access token (*)
``consent``                   key_of(identity, client)        a remembered consent (*)
``consent-withdrawal``        key_of(identity, client)        when consent was last withdrawn (ms)
``device-code``               H(device_code)                  a device authorization (RFC 8628)
``device-user-code``          user code (8 letters)           points at its device code
``device-poll``               H(device_code)                  last poll and interval (slow_down)
``authorization-request``     interaction id                  a request waiting for login and consent
``client-assertion-jti``      key_of(client_id, jti)          a private_key_jwt assertion seen once
``passport-issue``            passport jti                    the grant a token-exchange passport came from
============================  ==============================  ==========================================

(*) kind, key and JSON layout as the first release wrote them (``broker.store.legacy``), so
records written before read back. Every record with a lifetime has an expiry on the kernel,
so nothing outlives what it is for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.store.kernel import key_of
from broker.store.records import RecordType


@dataclass(frozen=True)
class Client:
    """An OAuth client. ``secret_hash`` is a hash of the secret, never the secret itself.

    A record written before ``require_pkce`` existed reads back with PKCE required (OA-05).
    """

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
    require_pkce: bool = True  # false: an operator let this confidential client skip PKCE (logged at start)

    @property
    def public(self) -> bool:
        return self.auth_method == "none"


@dataclass(frozen=True)
class OAuthGrant:
    """One grant: a researcher's authorization of a client, from a code or device-code redemption.

    Its id is the refresh-token family id and the ``grant`` claim of every access token it
    yields, so revoking the family ends them all. ``authorized_ms`` is when the researcher
    said yes (consent withdrawal compares with it); ``expires_at`` bounds its refresh tokens
    (absolute lifetime, RFC 9700 4.14.2); the record lives until ``keep_until``, when the
    last access token it can have produced has expired.
    """

    grant_id: str
    identity_id: str
    client_id: str
    scope: tuple[str, ...]
    authorized_ms: int
    started_at: int
    expires_at: int
    keep_until: int


@dataclass(frozen=True)
class AuthorizationCode:
    """A code and everything the token request must match (RFC 6749 4.1.3, RFC 7636 4.6).

    The ``get_*`` methods are authlib's ``AuthorizationCodeMixin`` (and OIDC's) protocol.
    """

    code_hash: str
    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    identity_id: str
    auth_time: int
    issued_ms: int  # when the researcher authorized: consent withdrawal compares with it
    expires_at: int
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    idp: str | None = None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return " ".join(self.scope)

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass(frozen=True)
class CodeRedemption:
    """Written in the same transaction that takes a code: the grant its redemption starts (OA-15)."""

    code_hash: str
    grant_id: str
    expires_at: int


@dataclass(frozen=True)
class RefreshToken:
    """One refresh token of a rotation family; looked up by the token's hash (layout of the first release)."""

    token_hash: str
    family_id: str
    identity_id: str
    client_id: str
    scope: str
    issued_at: int
    expires_at: int
    used: bool = False
    used_at: int = 0  # when it was first presented (the retry grace period counts from here)

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True)
class Consent:
    """A researcher's remembered consent for a client (opt-in, withdrawable)."""

    identity_id: str
    client_id: str
    scopes: tuple[str, ...]
    granted_at: int


@dataclass(frozen=True)
class ConsentWithdrawal:
    """Consent of ``identity_id`` for ``client_id`` was withdrawn at ``at_ms`` (milliseconds)."""

    identity_id: str
    client_id: str
    at_ms: int
    keep_until: int


@dataclass(frozen=True)
class DeviceAuthorization:
    """A device authorization (RFC 8628 3.2) and, once the person answered, their decision."""

    device_hash: str
    client_id: str
    scope: tuple[str, ...]
    user_code: str
    expires_at: int
    status: str = "pending"  # pending | approved | denied
    identity_id: str | None = None
    auth_time: int = 0
    idp: str | None = None
    approved_ms: int = 0

    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return " ".join(self.scope)


@dataclass(frozen=True)
class UserCode:
    """The short code a person types at ``/device``; names its device code."""

    user_code: str
    device_hash: str
    expires_at: int


@dataclass(frozen=True)
class DevicePoll:
    """When the device last polled and the interval in force (raised by each ``slow_down``)."""

    device_hash: str
    last_poll: int
    interval: int
    expires_at: int


@dataclass(frozen=True)
class Interaction:
    """An authorization request that waits for login and consent, bound to one browser."""

    uid: str
    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    browser: str
    created_at: int
    expires_at: int
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    prompt: tuple[str, ...] = ()
    max_age: int | None = None
    hint_sub: str | None = None
    force_login: bool = False


@dataclass(frozen=True)
class PassportIssue:
    """A passport minted by token exchange, and the access token and grant it came from (issue 11 item 4).

    Kept until the passport expires, so the gateway can refuse it once that access token, its
    grant (family) or the researcher's consent for the client is revoked.
    """

    jti: str
    grant_id: str
    access_jti: str
    identity_id: str
    client_id: str
    expires_at: int


@dataclass(frozen=True)
class AssertionUse:
    """A client assertion's ``jti``, kept until the assertion expires (JWT-29, OIDC Core 9)."""

    client_id: str
    jti: str
    expires_at: int


def family_term(family_id: str) -> str:
    return f"family:{family_id}"


CLIENTS: RecordType[Client] = RecordType("client", Client, key=lambda c: c.client_id)
GRANTS: RecordType[OAuthGrant] = RecordType(
    "oauth-grant", OAuthGrant, key=lambda g: g.grant_id, expires=lambda g: g.keep_until
)
CODES: RecordType[AuthorizationCode] = RecordType(
    "authorization-code", AuthorizationCode, key=lambda c: c.code_hash, expires=lambda c: c.expires_at
)
REDEMPTIONS: RecordType[CodeRedemption] = RecordType(
    "authorization-code-used", CodeRedemption, key=lambda r: r.code_hash, expires=lambda r: r.expires_at
)
REFRESH_TOKENS: RecordType[RefreshToken] = RecordType(
    "refresh-token",
    RefreshToken,
    key=lambda t: t.token_hash,
    terms=lambda t: (family_term(t.family_id),),
    expires=lambda t: t.expires_at,
)
CONSENTS: RecordType[Consent] = RecordType(
    "consent", Consent, key=lambda c: key_of(c.identity_id, c.client_id), terms=lambda c: (f"identity:{c.identity_id}",)
)
WITHDRAWALS: RecordType[ConsentWithdrawal] = RecordType(
    "consent-withdrawal",
    ConsentWithdrawal,
    key=lambda w: key_of(w.identity_id, w.client_id),
    expires=lambda w: w.keep_until,
)
DEVICE_CODES: RecordType[DeviceAuthorization] = RecordType(
    "device-code", DeviceAuthorization, key=lambda d: d.device_hash, expires=lambda d: d.expires_at
)
USER_CODES: RecordType[UserCode] = RecordType(
    "device-user-code", UserCode, key=lambda u: u.user_code, expires=lambda u: u.expires_at
)
DEVICE_POLLS: RecordType[DevicePoll] = RecordType(
    "device-poll", DevicePoll, key=lambda p: p.device_hash, expires=lambda p: p.expires_at
)
INTERACTIONS: RecordType[Interaction] = RecordType(
    "authorization-request", Interaction, key=lambda i: i.uid, expires=lambda i: i.expires_at
)
ASSERTIONS: RecordType[AssertionUse] = RecordType(
    "client-assertion-jti", AssertionUse, key=lambda a: key_of(a.client_id, a.jti), expires=lambda a: a.expires_at
)
PASSPORTS: RecordType[PassportIssue] = RecordType(
    "passport-issue", PassportIssue, key=lambda p: p.jti, expires=lambda p: p.expires_at
)
#: Markers ``{"until": t}`` under the family id / jti (layout of the first release).
REVOKED_FAMILY = "revoked-family"
REVOKED_JTI = "revoked-jti"
