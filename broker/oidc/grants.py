"""The authorization_code, refresh_token and device_code grants: authlib's grants, our single use and lifetimes.

Each is an authlib grant subclass registered on :class:`broker.oidc.server.OAuthServer`;
authlib runs the request (client authentication through our registry, grant-type check,
token generation by :class:`broker.oidc.tokens.AccessTokenGenerator`, ``save_token``, the
OIDC extension that adds the ID token). What is ours, and why:

- **Codes are taken, not read** (:meth:`CodeGrant.validate_token_request`). authlib's grant
  reads a code, checks it, and deletes it after issuing tokens: two concurrent redemptions
  could both succeed. Here one kernel transaction takes the code and records the grant its
  redemption starts (:meth:`~broker.oidc.repository.OidcRepository.redeem_code`); a later
  redemption finds that record and revokes the grant (RFC 6749 4.1.2, THREAT-MODEL OA-15,
  OA-16), however close together the two arrive. The winner still gets its ``200``, with
  tokens that are already dead when a loser came first: exactly one redemption succeeds,
  and every grant a second redemption touched ends.
- **Refresh tokens rotate with reuse detection** (:meth:`RefreshGrant.validate_token_request`):
  a token is marked used atomically; a second use, by anyone, revokes the whole family (RFC
  9700 4.14.2) and the access tokens with it (they name the family as ``grant``). A refresh
  token lives at most ``REFRESH_IDLE_SECONDS`` unused and never past the grant's absolute end;
  a refused scope is checked before the token is marked, so it does not burn it.
- **Consent withdrawal**: a grant starts only if consent was not withdrawn since the researcher
  authorized it (checked with the write, in one transaction), and a refresh after withdrawal
  fails and revokes the family (OA-20 cases 5, 6).
- **Device codes** (:class:`DeviceGrant`): polling faster than the interval gets ``slow_down``
  and raises the interval by 5 s for good (RFC 8628 3.5); an approved device code is redeemed
  once (a kernel ``take``); an unknown or used one is ``expired_token``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from authlib.oauth2.rfc6749.errors import UnauthorizedClientError  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.hooks import hooked  # type: ignore[import-untyped]
from authlib.oauth2.rfc8628 import DeviceCodeGrant  # type: ignore[import-untyped]
from authlib.oidc.core.grants import OpenIDCode  # type: ignore[import-untyped]

from broker.oidc.client_auth import METHODS
from broker.oidc.errors import OAuthError
from broker.oidc.params import scope_list
from broker.oidc.passwords import token_hash
from broker.oidc.records import AuthorizationCode, DevicePoll, OAuthGrant, RefreshToken
from broker.oidc.repository import OidcRepository
from broker.oidc.settings import OidcSettings
from broker.oidc.tokens import AccessTokens, new_id

SLOW_DOWN_STEP = 5  # seconds added to the polling interval by each slow_down (RFC 8628 3.5)


class GrantContext(Protocol):
    """What the grants need of the provider (``OAuthServer.context``)."""

    issuer: str
    settings: OidcSettings
    repository: OidcRepository
    tokens: AccessTokens

    def now(self) -> int: ...

    def audit(self, event: dict[str, Any], at: int) -> None: ...

    def refresh_successor(self, presented: str) -> str | None: ...


@dataclass(frozen=True)
class Approval:
    """Who approved an authorization request, and when (the ``grant_user`` of authlib's code issue)."""

    identity_id: str
    auth_time: int
    approved_ms: int
    idp: str | None = None

    def get_user_id(self) -> str:
        return self.identity_id


@dataclass(frozen=True)
class Authorized:
    """A started grant at the token endpoint (authlib's ``user``): tokens are minted for it at ``now``."""

    grant: OAuthGrant
    auth_time: int
    now: int
    nonce: str | None = None
    idp: str | None = None
    successor: str | None = None  # the refresh token this refresh must hand out (retry grace, see RefreshGrant)

    @property
    def identity_id(self) -> str:
        return self.grant.identity_id

    def get_user_id(self) -> str:
        return self.grant.identity_id


def start_grant(
    ctx: GrantContext,
    client_id: str,
    identity_id: str,
    scope: tuple[str, ...],
    authorized_ms: int,
    now: int,
    grant_id: str,
) -> OAuthGrant:
    """Record a grant that starts now; ``invalid_grant`` if consent was withdrawn since it was authorized."""
    settings = ctx.settings
    expires_at = now + settings.refresh_token_lifetime_seconds
    grant = OAuthGrant(
        grant_id=grant_id,
        identity_id=identity_id,
        client_id=client_id,
        scope=scope,
        authorized_ms=authorized_ms,
        started_at=now,
        expires_at=expires_at,
        keep_until=max(expires_at, now + 1) + settings.access_token_lifetime_seconds,
    )
    if not ctx.repository.start_grant(grant):
        raise OAuthError("invalid_grant", "The researcher withdrew consent for this client.")
    return grant


def _context(grant: Any) -> GrantContext:
    context: GrantContext = grant.server.context
    return context


class OpenIDTokenExtension(OpenIDCode):  # type: ignore[misc]  # authlib has no type information
    """authlib's OIDC extension: adds ``id_token`` to a token response whose scope has ``openid``.

    The ID token is ours (claims and key ring signature, :meth:`AccessTokens.mint_id_token`).
    Only the token-side hook is registered: nonce and prompt checks at the authorization
    endpoint are ours (:mod:`broker.oidc.authorization`), since authlib's know neither our
    session, ``max_age`` nor ``id_token_hint`` (OA-08, OA-36).
    """

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process_token)

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return False

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        user: Authorized = request.user
        tokens = request.context.tokens
        return str(
            tokens.mint_id_token(
                sub=user.identity_id,
                client_id=request.client.get_client_id(),
                auth_time=user.auth_time,
                now=user.now,
                nonce=user.nonce,
                access_token=token.get("access_token"),
            )
        )


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]  # authlib has no type information
    """The authorization code grant (RFC 6749 4.1) with atomic single use (module docstring)."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(METHODS)

    def save_authorization_code(self, code: str, request: Any) -> None:
        ctx = _context(self)
        user: Approval = request.user
        data = request.payload.data
        record = AuthorizationCode(
            code_hash=token_hash(code),
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=scope_list(request.scope),
            identity_id=user.identity_id,
            auth_time=user.auth_time,
            issued_ms=user.approved_ms,
            expires_at=ctx.now() + ctx.settings.code_lifetime_seconds,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            idp=user.idp,
        )
        ctx.repository.codes.put(record)

    def create_authorization_response(self, redirect_uri: str, grant_user: Approval) -> tuple[int, str, list[Any]]:
        """Issue and keep a code; the redirect itself (with ``state`` and ``iss``) is built by the caller."""
        self.request.user = grant_user
        code = self.generate_authorization_code()
        self.save_authorization_code(code, self.request)
        return 200, code, []

    @hooked  # type: ignore[untyped-decorator]
    def validate_token_request(self) -> None:
        ctx = _context(self)
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        code = self.request.form.get("code")
        if not code:
            raise OAuthError("invalid_request", "code is required.")
        now = ctx.now()
        grant_id = new_id()
        taken, earlier = ctx.repository.redeem_code(
            token_hash(code), grant_id, now + ctx.settings.refresh_token_lifetime_seconds
        )
        if taken is None:
            if earlier is not None:
                event = {"event": "oidc.code_reuse", "client_id": client.get_client_id(), "grant": earlier.grant_id}
                ctx.repository.revoke_family(earlier.grant_id, audit=event, at=now)
            raise OAuthError("invalid_grant", "The code is invalid, expired or already used.")
        if taken.client_id != client.get_client_id():
            raise OAuthError("invalid_grant", "The code was issued to another client.")
        if taken.expires_at <= now:
            raise OAuthError("invalid_grant", "The code is invalid, expired or already used.")
        if self.request.form.get("redirect_uri") != taken.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request.")
        self.request.client = client
        self.request.authorization_code = taken
        self.request.grant_id = grant_id
        self.request.context = ctx

    def query_authorization_code(self, code: str, client: Any) -> None:
        raise NotImplementedError("codes are taken in validate_token_request, never read")  # pragma: no cover

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing to do: the code was taken (deleted) when it was redeemed."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Authorized:
        """Start the grant the redemption reserved (refused after a consent withdrawal)."""
        ctx = _context(self)
        now = ctx.now()
        code = authorization_code
        grant = start_grant(
            ctx, code.client_id, code.identity_id, code.scope, code.issued_ms, now, grant_id=self.request.grant_id
        )
        return Authorized(grant=grant, auth_time=code.auth_time, now=now, nonce=code.nonce, idp=code.idp)


class RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]  # authlib has no type information
    """The refresh token grant (RFC 6749 6) with rotation and reuse detection (module docstring)."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True

    def validate_token_request(self) -> None:
        ctx = _context(self)
        repo = ctx.repository
        client = self._validate_request_client()
        client_id = client.get_client_id()
        presented = self.request.form.get("refresh_token")
        if not presented:
            raise OAuthError("invalid_request", "refresh_token is required.")
        requested = scope_list(self.request.form.get("scope"))
        key = token_hash(presented)
        # The scope is checked before the token is marked used, so a refused scope does not burn it.
        peek = repo.refresh_token(key)
        if peek is not None and peek.client_id == client_id and not set(requested) <= set(peek.scope.split()):
            raise OAuthError("invalid_scope", "A refresh cannot add scopes.")
        now = ctx.now()
        old = repo.use_refresh_token(key, now)
        if old is None:
            raise OAuthError("invalid_grant", "The refresh token is invalid or expired.")
        successor = ctx.refresh_successor(presented)
        if old.used and not self._retry(old, successor, client_id, now):
            event = {"event": "oidc.refresh_reuse", "client_id": old.client_id, "grant": old.family_id}
            repo.revoke_family(old.family_id, audit=event, at=now)
            raise OAuthError("invalid_grant", "The refresh token was already used; its grant is revoked.")
        if old.client_id != client_id:
            repo.revoke_family(old.family_id)
            raise OAuthError("invalid_grant", "The refresh token was issued to another client.")
        if repo.family_revoked(old.family_id) or old.expires_at <= now:
            raise OAuthError("invalid_grant", "The refresh token is revoked or expired.")
        grant = repo.grant(old.family_id)
        if grant is None or grant.expires_at <= now:
            raise OAuthError("invalid_grant", "The grant of this refresh token has ended.")
        withdrawn = repo.withdrawn_at_ms(grant.identity_id, grant.client_id)
        if withdrawn is not None and grant.authorized_ms <= withdrawn:
            repo.revoke_family(grant.grant_id)
            raise OAuthError("invalid_grant", "The researcher withdrew consent for this client.")
        if not set(requested) <= set(old.scope.split()):
            raise OAuthError("invalid_scope", "A refresh cannot add scopes.")
        self.request.client = client
        self.request.refresh_token = old
        self.request.user = Authorized(grant=grant, auth_time=grant.started_at, now=now, successor=successor)

    def _retry(self, old: RefreshToken, successor: str | None, client_id: str, now: int) -> bool:
        """Whether a used refresh token presented again is a retry (same successor) rather than a reuse.

        A client whose answer was lost (a 503, a dropped connection) sends the same token again.
        Within ``oidc.refresh_retry_grace_seconds`` of its first use, by the same client, while
        the successor it was given has not been used itself, the refresh is answered again with
        that same successor: the successor is derived from the presented token under the server
        pepper, so every retry (and a racing duplicate) names the one token. Otherwise it is
        reuse (RFC 9700 4.14.2) and the family is revoked. Without a pepper there is no retry.
        """
        if successor is None or old.client_id != client_id or old.used_at <= 0:
            return False
        if now - old.used_at > _context(self).settings.refresh_retry_grace_seconds:
            return False
        following = _context(self).repository.refresh_token(token_hash(successor))
        return following is None or not following.used

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        return _context(self).repository.refresh_token(token_hash(refresh_token))  # pragma: no cover

    def authenticate_user(self, refresh_token: RefreshToken) -> Authorized:
        user: Authorized = self.request.user
        return user

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Nothing to do: the token was marked used, atomically, when it was presented."""


class DeviceGrant(DeviceCodeGrant):  # type: ignore[misc]  # authlib has no type information
    """The device_code grant at /token (RFC 8628 3.4, 3.5); see the module docstring."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(METHODS)

    def validate_token_request(self) -> None:
        ctx = _context(self)
        repo = ctx.repository
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        device_code = self.request.form.get("device_code")
        if not device_code:
            raise OAuthError("invalid_request", "device_code is required.")
        key = token_hash(device_code)
        now = ctx.now()
        record = repo.devices.get(key)
        if record is None or record.expires_at <= now:
            raise OAuthError("expired_token", "The device code is unknown or expired.")
        if record.client_id != client.get_client_id():
            raise OAuthError("invalid_grant", "The device code was issued to another client.")
        if record.status == "pending":
            self._check_poll(key, record.expires_at, now)
            raise OAuthError("authorization_pending", "The user has not answered yet.")
        taken = repo.devices.take(key)
        if taken is None:
            raise OAuthError("expired_token", "The device code was already used.")
        if taken.status != "approved" or taken.identity_id is None:
            raise OAuthError("access_denied", "The user denied the request.")
        grant = start_grant(
            ctx, taken.client_id, taken.identity_id, taken.scope, taken.approved_ms, now, grant_id=new_id()
        )
        self.request.client = client
        self.request.credential = taken
        self.request.context = ctx
        self.request.user = Authorized(grant=grant, auth_time=taken.auth_time, now=now, idp=taken.idp)

    def _check_poll(self, key: str, expires_at: int, now: int) -> None:
        """Enforce the polling interval: ``slow_down`` adds 5 s to it, for good (RFC 8628 3.5).

        The poll state is its own record so a poll never overwrites the decision the person
        writes into the device record at the same moment.
        """
        ctx = _context(self)
        polls = ctx.repository.polls
        state = polls.get(key)
        interval = state.interval if state is not None else ctx.settings.device_poll_interval_seconds
        too_fast = state is not None and now - state.last_poll < interval
        if too_fast:
            interval += SLOW_DOWN_STEP
        polls.put(DevicePoll(device_hash=key, last_poll=now, interval=interval, expires_at=max(now + 1, expires_at)))
        if too_fast:
            raise OAuthError("slow_down", f"Poll less often: wait at least {interval} seconds between requests.")

    def query_device_credential(self, device_code: str) -> None:
        raise NotImplementedError("device codes are read in validate_token_request")  # pragma: no cover
