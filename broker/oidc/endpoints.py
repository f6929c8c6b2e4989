"""Token, userinfo, introspection and revocation endpoints (RFC 6749 3.2, OIDC Core 5.3, RFC 7662, RFC 7009).

Every answer that carries a token has ``Cache-Control: no-cache, no-store`` and
``Pragma: no-cache``. Request bodies must be ``application/x-www-form-urlencoded`` with no
parameter repeated (``resource``/``audience`` of the token exchange excepted).

Brute force is answered ``429`` with ``Retry-After`` and ``{"error": "too_many_requests"}``
(``rate_limit.py``): failed client authentications per claimed client and address
(THREAT-MODEL OA-18), and introspections of inactive tokens per client (OA-25).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, jsonify, request

from broker.core.models import PASSPORT_CLAIM, PASSPORT_SCOPE, TOKEN_EXCHANGE_GRANT
from broker.oidc import grants, token_exchange
from broker.oidc.client_auth import AuthenticatedClient, authenticate, claimed_client_id
from broker.oidc.clients import DEVICE_CODE_GRANT
from broker.oidc.errors import BearerError, OAuthError, no_store
from broker.oidc.grants import live_refresh_token, refresh_owner
from broker.oidc.params import OversizedParameter, RepeatedParameter, single_values
from broker.oidc.rate_limit import (
    CLIENT_AUTH_FAILURES,
    INTROSPECTION_MISSES,
    RateLimited,
    RateLimiter,
    client_address,
    limit_key,
)
from broker.oidc.tokens import InvalidToken, verify_access_token
from broker.runtime import Runtime, current_runtime

REPEATABLE = frozenset({"resource", "audience"})


def endpoint_url(rt: Runtime, path: str) -> str:
    """An absolute URL of ours, always from the configured issuer (never from Host headers)."""
    return rt.settings.issuer.rstrip("/") + path


def form_params() -> dict[str, str]:
    """The single-valued form parameters of a token-style request, or OAuthError(invalid_request)."""
    mimetype = request.mimetype
    if mimetype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "The body must be application/x-www-form-urlencoded.")
    raw = request.form.copy()
    for name in REPEATABLE:
        raw.poplist(name)
    try:
        params = single_values(raw)
    except (RepeatedParameter, OversizedParameter) as exc:
        raise OAuthError("invalid_request", str(exc)) from None
    if request.args:
        raise OAuthError("invalid_request", "Parameters belong in the body, not the query.")
    return params


def client_of_request(rt: Runtime, form: dict[str, str], path: str, *, allow_public: bool) -> AuthenticatedClient:
    """Authenticate the client of this request, within the failure limit (OA-18).

    Failures are counted per (claimed client_id, address) in the store; once the limit is
    reached, every attempt of that pair gets ``429`` with ``Retry-After`` until the window
    ends, right or wrong, so guessing gains nothing from trying on.
    """
    authorization = request.headers.get("Authorization")
    key = limit_key(claimed_client_id(form, authorization), client_address())
    limiter = RateLimiter(rt.store)
    try:
        limiter.check(CLIENT_AUTH_FAILURES, key)
    except RateLimited as exc:
        raise exc.oauth_error() from None
    try:
        return authenticate(
            rt.settings, rt.store, form, authorization, endpoint_url(rt, path), allow_public=allow_public
        )
    except OAuthError as exc:
        if exc.error == "invalid_client":
            limiter.hit(CLIENT_AUTH_FAILURES, key)
        raise


def token() -> Response:
    """POST /token."""
    rt = current_runtime()
    now = int(time.time())
    form = form_params()
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required.")
    auth = client_of_request(rt, form, "/token", allow_public=grant_type != TOKEN_EXCHANGE_GRANT)
    handlers = {
        "authorization_code": grants.authorization_code,
        "refresh_token": grants.refresh_token,
    }
    if grant_type not in (*handlers, TOKEN_EXCHANGE_GRANT, DEVICE_CODE_GRANT):
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported.")
    if grant_type not in auth.client.grant_types:
        raise OAuthError("unauthorized_client", f"This client may not use the {grant_type} grant.")
    body: dict[str, Any]
    if grant_type == TOKEN_EXCHANGE_GRANT:
        body = token_exchange.exchange(rt, auth, form, request.form, now)
    elif grant_type == DEVICE_CODE_GRANT:
        from broker.oidc.device import redeem

        body = redeem(rt, auth, form, now)
    else:
        body = handlers[grant_type](rt, auth, form, now)
    return no_store(jsonify(body))


def bearer_token(allow_body: bool) -> str:
    """The access token of a request (RFC 6750 2): header, or form body for POST; never the query."""
    if "access_token" in request.args:
        raise BearerError("invalid_request", "Access tokens are not accepted in the query string.", 400)
    headers = request.headers.getlist("Authorization")
    body_token = None
    if allow_body and request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        values = request.form.getlist("access_token")
        if len(values) > 1:
            raise BearerError("invalid_request", "access_token is repeated.", 400)
        body_token = values[0] if values else None
    if len(headers) > 1 or (headers and body_token is not None):
        raise BearerError("invalid_request", "Use exactly one way to send the access token.", 400)
    if headers:
        scheme, _, value = headers[0].strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise BearerError(None)
        return value.strip()
    if body_token:
        return body_token
    raise BearerError(None)


def userinfo() -> Response:
    """GET or POST /userinfo: the user's claims; ga4gh_passport_v1 only with that scope."""
    rt = current_runtime()
    presented = bearer_token(allow_body=True)
    try:
        at = verify_access_token(rt.keyring, rt.settings, rt.store, presented)
    except InvalidToken:
        raise BearerError("invalid_token", "The access token is invalid, expired or revoked.") from None
    if "openid" not in at.scope:
        raise BearerError("insufficient_scope", "The access token lacks the openid scope.", 403)
    body: dict[str, Any] = {"iss": rt.settings.issuer, "sub": at.sub}
    identity = rt.store.get_identity(at.sub)
    if identity is not None:
        if "profile" in at.scope and identity.display_name:
            body["name"] = identity.display_name
        if "email" in at.scope and identity.email:
            body["email"] = identity.email
    if PASSPORT_SCOPE in at.scope:
        body[PASSPORT_CLAIM] = rt.passport_visas(at.sub)
    return no_store(jsonify(body))


def introspect() -> Response:
    """POST /introspect (RFC 7662): authenticated clients only; a client sees only its own tokens.

    Access and refresh tokens are both looked up, the hinted kind first (RFC 7662 2.1: the
    hint only speeds the search). A refresh token is active while a refresh would accept it:
    not rotated, not expired (idle or absolute), family not revoked, consent not withdrawn;
    its answer has no ``token_type`` and no ``aud`` (``token_type`` names access-token types,
    RFC 7662 2.2), so no resource server can take it for an access token.
    Every ``{"active": false}`` counts against the client's scanning limit (OA-25).
    """
    rt = current_runtime()
    form = form_params()
    auth = client_of_request(rt, form, "/introspect", allow_public=False)
    presented = form.get("token")
    if not presented:
        raise OAuthError("invalid_request", "token is required.")
    client_id = auth.client.client_id
    limiter = RateLimiter(rt.store)
    try:
        limiter.check(INTROSPECTION_MISSES, limit_key(client_id))
    except RateLimited as exc:
        raise exc.oauth_error() from None
    now = int(time.time())
    lookups = [_introspect_access, _introspect_refresh]
    if form.get("token_type_hint") == "refresh_token":
        lookups.reverse()
    for lookup in lookups:
        found = lookup(rt, client_id, presented, now)
        if found is not None:
            return no_store(jsonify(found))
    limiter.hit(INTROSPECTION_MISSES, limit_key(client_id))
    return no_store(jsonify(active=False))


def _introspect_access(rt: Runtime, client_id: str, presented: str, now: int) -> dict[str, Any] | None:
    try:
        at = verify_access_token(rt.keyring, rt.settings, rt.store, presented, now=now)
    except InvalidToken:
        return None
    if at.client_id != client_id:
        return None
    return {
        "active": True,
        "scope": " ".join(at.scope),
        "client_id": at.client_id,
        "sub": at.sub,
        "aud": at.claims["aud"],
        "iss": rt.settings.issuer,
        "exp": at.exp,
        "iat": at.iat,
        "jti": at.jti,
        "token_type": "Bearer",
    }


def _introspect_refresh(rt: Runtime, client_id: str, presented: str, now: int) -> dict[str, Any] | None:
    if len(presented) > 512:
        return None
    owner = live_refresh_token(rt, presented, client_id, now)
    if owner is None:
        return None
    return {
        "active": True,
        "scope": " ".join(owner.scope),
        "client_id": owner.client_id,
        "sub": owner.identity_id,
        "iss": rt.settings.issuer,
        "exp": owner.expires_at,
        "iat": owner.issued_at,
    }


def revoke() -> Response:
    """POST /revoke (RFC 7009): 200 whatever the token; only the owning client's tokens are revoked."""
    rt = current_runtime()
    form = form_params()
    auth = client_of_request(rt, form, "/revoke", allow_public=True)
    presented = form.get("token")
    if not presented:
        raise OAuthError("invalid_request", "token is required.")
    hint = form.get("token_type_hint")
    if hint is not None and hint not in ("access_token", "refresh_token"):
        raise OAuthError("unsupported_token_type", "token_type_hint must be access_token or refresh_token.")
    now = int(time.time())
    try:
        at = verify_access_token(rt.keyring, rt.settings, rt.store, presented, now=now)
    except InvalidToken:
        at = None
    if at is not None:
        if at.client_id == auth.client.client_id:
            rt.store.revoke_token_id(at.jti, at.exp)
        return no_store(Response(status=200))
    _revoke_refresh(rt, auth, presented, now)
    return no_store(Response(status=200))


def _revoke_refresh(rt: Runtime, auth: AuthenticatedClient, presented: str, now: int) -> None:
    """Revoke the grant of a refresh token of this client (its family and its access tokens).

    A token of another client is left untouched (RFC 7009 2.1: the server verifies the
    token was issued to the client making the request). A rotated token of this client
    still names its grant, and revoking it ends the grant: that is what the client asked.
    """
    if len(presented) > 512:
        return
    owner = refresh_owner(rt, presented)
    if owner is not None and owner.client_id == auth.client.client_id:
        rt.store.revoke_family(owner.grant)
        rt.store.audit_append({"event": "oidc.revoke", "client_id": auth.client.client_id, "grant": owner.grant}, now)
