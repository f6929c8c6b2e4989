"""The authorization_code and refresh_token grants (RFC 6749 4.1.3, 6; RFC 9700 4.14).

Codes are single-use through the store's atomic ``consume_ticket``. A redeemed code leaves
a ``code_used`` marker naming the grant it started; presenting the code again revokes that
grant (its access tokens and its refresh-token family) and fails (RFC 6749 4.1.2).

Refresh tokens rotate on every use. ``use_refresh_token`` marks a token used atomically and
returns its state from before, so a second use of the same token, by anyone, is detected:
the whole family is revoked (RFC 9700 4.14.2) and the access tokens of the grant die with
it (they carry the family id as ``grant``).
"""

from __future__ import annotations

import secrets
from typing import Any

from broker.oidc.client_auth import AuthenticatedClient
from broker.oidc.errors import OAuthError
from broker.oidc.params import scope_list
from broker.oidc.passwords import token_hash
from broker.oidc.pkce import valid_verifier, verifier_matches
from broker.oidc.tokens import mint_access_token, mint_id_token, new_id
from broker.runtime import Runtime
from broker.store.base import RefreshToken

CODE_USED = "code_used"
REFRESH_OWNER = "refresh_owner"


def _tokens(rt: Runtime, client_id: str, identity_id: str, scope: tuple[str, ...], grant: str, now: int, *,
            with_refresh: bool, refresh_expires_at: int | None = None, idp: str | None = None,
            ) -> tuple[dict[str, Any], str]:
    access, claims = mint_access_token(rt.keyring, rt.settings, sub=identity_id, client_id=client_id, scope=scope,
                                       grant=grant, now=now, idp=idp)
    body: dict[str, Any] = {
        "access_token": access, "token_type": "Bearer",
        "expires_in": claims.exp - now, "scope": " ".join(scope),
    }
    if with_refresh:
        refresh = secrets.token_urlsafe(32)
        expires_at = refresh_expires_at or now + rt.settings.oidc.refresh_token_lifetime_seconds
        rt.store.put_refresh_token(RefreshToken(
            token_hash=token_hash(refresh), family_id=grant, identity_id=identity_id, client_id=client_id,
            scope=" ".join(scope), issued_at=now, expires_at=expires_at,
        ))
        # Read-only owner record for /revoke (the store has no lookup that does not mark the token used).
        rt.store.put_ticket(REFRESH_OWNER, token_hash(refresh), {"client_id": client_id, "grant": grant},
                            max(1, expires_at - now))
        body["refresh_token"] = refresh
    return body, claims.jti


def authorization_code(rt: Runtime, auth: AuthenticatedClient, form: dict[str, str], now: int) -> dict[str, Any]:
    code = form.get("code")
    if not code:
        raise OAuthError("invalid_request", "code is required.")
    key = token_hash(code)
    record = rt.store.consume_ticket("code", key)
    if record is None:
        used = rt.store.peek_ticket(CODE_USED, key)
        if used is not None:
            rt.store.revoke_token_id(used["jti"], used["exp"])
            rt.store.revoke_family(used["grant"])
            rt.store.audit_append({"event": "oidc.code_reuse", "client_id": auth.client.client_id,
                                   "grant": used["grant"]}, now)
        raise OAuthError("invalid_grant", "The code is invalid, expired or already used.")
    if record["client_id"] != auth.client.client_id:
        raise OAuthError("invalid_grant", "The code was issued to another client.")
    if form.get("redirect_uri") != record["redirect_uri"]:
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request.")
    verifier = form.get("code_verifier")
    challenge = record.get("code_challenge")
    if challenge:
        if verifier is None:
            raise OAuthError("invalid_grant", "code_verifier is required.")
        if not valid_verifier(verifier) or not verifier_matches(verifier, challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code challenge.")
    elif verifier is not None:
        raise OAuthError("invalid_grant", "code_verifier sent but the authorization request had no challenge.")
    scope = tuple(record["scope"])
    grant = new_id()
    body, jti = _tokens(rt, auth.client.client_id, record["identity_id"], scope, grant, now,
                        with_refresh="refresh_token" in auth.client.grant_types, idp=record.get("idp"))
    rt.store.put_ticket(CODE_USED, key, {"jti": jti, "grant": grant, "exp": now + body["expires_in"]},
                        rt.settings.oidc.refresh_token_lifetime_seconds)
    if "openid" in scope:
        body["id_token"] = mint_id_token(
            rt.keyring, rt.settings, sub=record["identity_id"], client_id=auth.client.client_id,
            auth_time=record["auth_time"], now=now, nonce=record.get("nonce"), access_token=body["access_token"],
        )
    return body


def refresh_token(rt: Runtime, auth: AuthenticatedClient, form: dict[str, str], now: int) -> dict[str, Any]:
    presented = form.get("refresh_token")
    if not presented:
        raise OAuthError("invalid_request", "refresh_token is required.")
    old = rt.store.use_refresh_token(token_hash(presented))
    if old is None:
        raise OAuthError("invalid_grant", "The refresh token is invalid or expired.")
    if old.used:
        rt.store.revoke_family(old.family_id)
        rt.store.audit_append({"event": "oidc.refresh_reuse", "client_id": old.client_id,
                               "grant": old.family_id}, now)
        raise OAuthError("invalid_grant", "The refresh token was already used; its grant is revoked.")
    if old.client_id != auth.client.client_id:
        rt.store.revoke_family(old.family_id)
        raise OAuthError("invalid_grant", "The refresh token was issued to another client.")
    if rt.store.family_revoked(old.family_id) or old.expires_at <= now:
        raise OAuthError("invalid_grant", "The refresh token is revoked or expired.")
    granted = tuple(old.scope.split())
    requested = scope_list(form.get("scope")) or granted
    if not set(requested) <= set(granted):
        raise OAuthError("invalid_scope", "A refresh cannot add scopes.")
    body, _ = _tokens(rt, old.client_id, old.identity_id, requested, old.family_id, now, with_refresh=True,
                      refresh_expires_at=old.expires_at)
    return body
