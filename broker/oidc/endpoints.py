"""Introspection (RFC 7662), revocation (RFC 7009) and device authorization (RFC 8628 3.1): authlib endpoints.

Each subclasses authlib's endpoint and is registered on the server; authlib authenticates the
client (our registry and rules) and shapes the exchange. What is ours:

- **Introspection** looks up access and refresh tokens, the hinted kind first (RFC 7662 2.1:
  the hint only speeds the search, so an unknown hint is ignored). A client sees only its own
  tokens; everything else is ``{"active": false}`` with no other member. A refresh token is
  active while a refresh would accept it (not rotated, not expired, family not revoked,
  consent not withdrawn); its answer has no ``token_type`` and no ``aud``, so no resource
  server can take it for an access token. Every inactive answer counts against the client's
  scanning limit: past it, ``429`` with ``Retry-After`` (OA-25).
- **Revocation** answers ``200`` with an empty body whatever the token (RFC 7009 2.2); only
  the owning client's tokens are revoked (a token of another client is left alone, 2.1).
  Revoking a refresh token (rotated or not) ends its grant: the family and its access tokens.
- **Device authorization** issues a device code (authlib's generator, kept by hash) and an
  8-letter user code of 20 consonants (authlib's alphabet), limited per client and address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint  # type: ignore[import-untyped]
from authlib.oauth2.rfc7662 import IntrospectionEndpoint  # type: ignore[import-untyped]
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint  # type: ignore[import-untyped]

from broker.oidc.client_auth import METHODS
from broker.oidc.clients import DEVICE_CODE_GRANT
from broker.oidc.errors import NO_STORE, OAuthError
from broker.oidc.params import scope_list
from broker.oidc.passwords import token_hash
from broker.oidc.rate_limit import DEVICE_AUTHORIZATIONS, INTROSPECTION_MISSES
from broker.oidc.records import DeviceAuthorization, RefreshToken, UserCode
from broker.oidc.tokens import AccessToken, InvalidToken
from broker.web.rate_limit import RateLimited, limit_key

JSON_NO_STORE = [("Content-Type", "application/json"), *NO_STORE.items()]
MAX_REFRESH_TOKEN_CHARS = 512
USER_CODE_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels (no words), no look-alikes (RFC 8628 6.1)


@dataclass(frozen=True)
class FoundToken:
    """A token an introspection or revocation found: one of our access tokens or a refresh token."""

    access: AccessToken | None = None
    refresh: RefreshToken | None = None

    @property
    def client_id(self) -> str:
        return self.access.client_id if self.access is not None else self.refresh.client_id if self.refresh else ""

    def check_client(self, client: Any) -> bool:
        return bool(self.client_id) and self.client_id == client.get_client_id()


def _find(ctx: Any, presented: str, hint: str | None, *, live_refresh: bool) -> FoundToken | None:
    """The access or refresh token ``presented`` names, the hinted kind first."""

    def access() -> FoundToken | None:
        try:
            return FoundToken(access=ctx.tokens.verify(presented))
        except InvalidToken:
            return None

    def refresh() -> FoundToken | None:
        if len(presented) > MAX_REFRESH_TOKEN_CHARS:
            return None
        record = ctx.repository.refresh_token(token_hash(presented))
        if record is None or (live_refresh and not _refresh_live(ctx, record)):
            return None
        return FoundToken(refresh=record)

    lookups = [refresh, access] if hint == "refresh_token" else [access, refresh]
    for lookup in lookups:
        found = lookup()
        if found is not None:
            return found
    return None


def _refresh_live(ctx: Any, token: RefreshToken) -> bool:
    """Whether a refresh would accept ``token`` now (no side effects)."""
    repo = ctx.repository
    now = ctx.now()
    if token.used or token.expires_at <= now or repo.family_revoked(token.family_id):
        return False
    grant = repo.grant(token.family_id)
    if grant is None or grant.expires_at <= now:
        return False
    withdrawn = repo.withdrawn_at_ms(grant.identity_id, grant.client_id)
    return withdrawn is None or grant.authorized_ms > withdrawn


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]  # authlib has no type information
    """RFC 7662 for authenticated clients, limited against token scanning (module docstring)."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]

    def check_params(self, request: Any, client: Any) -> None:
        if not request.form.get("token"):
            raise OAuthError("invalid_request", "token is required.")

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        ctx = self.server.context
        client = self.authenticate_endpoint_client(request)
        key = limit_key(client.get_client_id())
        try:
            ctx.limiter.check(INTROSPECTION_MISSES, key)
        except RateLimited as exc:
            raise OAuthError.too_many(exc.retry_after) from None
        found = self.authenticate_token(request, client)
        if found is None:
            ctx.limiter.hit(INTROSPECTION_MISSES, key)
            return 200, {"active": False}, JSON_NO_STORE
        return 200, self.introspect_token(found), JSON_NO_STORE

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return _find(self.server.context, token_string, token_type_hint, live_refresh=True)

    def check_permission(self, token: FoundToken, client: Any, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: FoundToken) -> dict[str, Any]:
        issuer = self.server.context.issuer
        if token.access is not None:
            at = token.access
            return {
                "active": True,
                "scope": " ".join(at.scope),
                "client_id": at.client_id,
                "sub": at.sub,
                "aud": at.claims["aud"],
                "iss": issuer,
                "exp": at.exp,
                "iat": at.iat,
                "jti": at.jti,
                "token_type": "Bearer",
            }
        assert token.refresh is not None
        rt = token.refresh
        return {
            "active": True,
            "scope": rt.scope,
            "client_id": rt.client_id,
            "sub": rt.identity_id,
            "iss": issuer,
            "exp": rt.expires_at,
            "iat": rt.issued_at,
        }


class Revocation(RevocationEndpoint):  # type: ignore[misc]  # authlib has no type information
    """RFC 7009: 200 with an empty body; only the owning client's tokens are revoked (module docstring)."""

    CLIENT_AUTH_METHODS = list(METHODS)

    def check_params(self, request: Any, client: Any) -> None:
        if not request.form.get("token"):
            raise OAuthError("invalid_request", "token is required.")
        hint = request.form.get("token_type_hint")
        if hint is not None and hint not in self.SUPPORTED_TOKEN_TYPES:
            raise OAuthError("unsupported_token_type", "token_type_hint must be access_token or refresh_token.")

    def authenticate_token(self, request: Any, client: Any) -> FoundToken | None:
        self.check_params(request, client)
        found = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        return found if found is not None and found.check_client(client) else None

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return _find(self.server.context, token_string, token_type_hint, live_refresh=False)

    def revoke_token(self, token: FoundToken, request: Any) -> None:
        ctx = self.server.context
        if token.access is not None:
            ctx.repository.revoke_jti(token.access.jti, token.access.exp)
            return
        assert token.refresh is not None
        family = token.refresh.family_id
        event = {"event": "oidc.revoke", "client_id": token.refresh.client_id, "grant": family}
        ctx.repository.revoke_family(family, audit=event, at=ctx.now())

    def create_endpoint_response(self, request: Any) -> tuple[int, str, list[tuple[str, str]]]:
        client = self.authenticate_endpoint_client(request)
        found = self.authenticate_token(request, client)
        if found is not None:
            self.revoke_token(found, request)
        return 200, "", list(NO_STORE.items())


class DeviceAuthorizations(DeviceAuthorizationEndpoint):  # type: ignore[misc]  # authlib has no type information
    """RFC 8628 3.1-3.2 (module docstring); ``verification_uri`` under our issuer."""

    CLIENT_AUTH_METHODS = list(METHODS)
    USER_CODE_TYPE = "string"

    def get_verification_uri(self) -> str:
        return f"{self.server.context.issuer.rstrip('/')}/device"

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        ctx = self.server.context
        client = self.authenticate_client(request)
        if DEVICE_CODE_GRANT not in client.record.grant_types:
            raise OAuthError("unauthorized_client", "This client may not use the device authorization grant.")
        scopes = scope_list(request.form.get("scope")) or ("openid",)
        if "openid" not in scopes or any(s not in client.record.scopes for s in scopes):
            raise OAuthError("invalid_scope", "Scope not allowed for this client (openid is required).")
        try:
            ctx.limiter.take(DEVICE_AUTHORIZATIONS, limit_key(client.get_client_id(), request.address))
        except RateLimited as exc:
            raise OAuthError.too_many(exc.retry_after) from None
        lifetime = ctx.settings.device_code_lifetime_seconds
        now = ctx.now()
        device_code = self.generate_device_code()
        user_code = self.generate_user_code().replace("-", "")
        device_hash = token_hash(device_code)
        pointer = UserCode(user_code=user_code, device_hash=device_hash, expires_at=now + lifetime)
        if not ctx.repository.user_codes.add(pointer):
            raise OAuthError("temporarily_unavailable", "Try again.", 503)
        record = DeviceAuthorization(
            device_hash=device_hash,
            client_id=client.get_client_id(),
            scope=scopes,
            user_code=user_code,
            expires_at=now + lifetime,
        )
        ctx.repository.devices.put(record)
        shown = f"{user_code[:4]}-{user_code[4:]}"
        base = self.get_verification_uri()
        body = {
            "device_code": device_code,
            "user_code": shown,
            "verification_uri": base,
            "verification_uri_complete": f"{base}?user_code={shown}",
            "expires_in": lifetime,
            "interval": ctx.settings.device_poll_interval_seconds,
        }
        return 200, body, JSON_NO_STORE


def normalize_user_code(user_code: str) -> str:
    """What a person typed, as the stored 8 letters (case and dashes ignored)."""
    return "".join(c for c in user_code.upper() if c in USER_CODE_LETTERS)[:16]
