"""GA4GH AAI 1.2 token exchange (RFC 8693; SPEC-DIGEST 6.3): a passport JWT for an access token.

The client must authenticate (never a public client). The subject token must be one of
our own live access tokens, issued to this very client, with scope ``ga4gh_passport_v1``;
any failure of the subject token is ``400 invalid_request`` (THREAT-MODEL EPM d).
``resource`` and ``audience`` (each may repeat) become the passport's ``aud``.
"""

from __future__ import annotations

from typing import Any

import jwt
from werkzeug.datastructures import MultiDict

from broker.core.models import ACCESS_TOKEN_TYPE, PASSPORT_SCOPE, PASSPORT_TOKEN_TYPE
from broker.oidc.client_auth import AuthenticatedClient
from broker.oidc.errors import OAuthError
from broker.oidc.tokens import InvalidToken, verify_access_token
from broker.runtime import Runtime

MAX_AUDIENCES = 10


def _audiences(raw: MultiDict[str, str]) -> list[str]:
    """``resource`` values (absolute URIs without fragment) and ``audience`` values, in order."""
    out: list[str] = []
    for value in raw.getlist("resource"):
        if not value.startswith(("https://", "http://")) or "#" in value or len(value) > 2000:
            raise OAuthError("invalid_target", "resource must be an absolute http(s) URI without fragment.")
        out.append(value)
    for value in raw.getlist("audience"):
        if not value or len(value) > 2000:
            raise OAuthError("invalid_target", "audience values must be 1-2000 characters.")
        out.append(value)
    if len(out) > MAX_AUDIENCES:
        raise OAuthError("invalid_target", f"At most {MAX_AUDIENCES} resource/audience values.")
    return list(dict.fromkeys(out))


def exchange(
    rt: Runtime, auth: AuthenticatedClient, form: dict[str, str], raw: MultiDict[str, str], now: int
) -> dict[str, Any]:
    from broker.core.issue import mint_passport

    if auth.client.public:
        raise OAuthError("invalid_client", "Token exchange requires client authentication.", 401)
    if form.get("requested_token_type") != PASSPORT_TOKEN_TYPE:
        raise OAuthError("invalid_request", f"requested_token_type must be {PASSPORT_TOKEN_TYPE}.")
    if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
        raise OAuthError("invalid_request", f"subject_token_type must be {ACCESS_TOKEN_TYPE}.")
    if "actor_token" in form or "actor_token_type" in form:
        raise OAuthError("invalid_request", "actor_token is not supported.")
    subject = form.get("subject_token")
    if not subject:
        raise OAuthError("invalid_request", "subject_token is required.")
    try:
        token = verify_access_token(rt.keyring, rt.settings, rt.store, subject, now=now)
    except InvalidToken as exc:
        raise OAuthError("invalid_request", f"subject_token is not a valid access token ({exc.reason}).") from None
    if token.client_id != auth.client.client_id:
        raise OAuthError("invalid_request", "subject_token was issued to another client.")
    if PASSPORT_SCOPE not in token.scope:
        raise OAuthError("invalid_request", f"subject_token lacks the {PASSPORT_SCOPE} scope.")
    audiences = _audiences(raw)
    visas = rt.passport_visas(token.sub)
    lifetime = rt.settings.oidc.passport_lifetime_seconds
    audience: str | list[str] | None = None
    if len(audiences) == 1:
        audience = audiences[0]
    elif audiences:
        audience = audiences
    passport = mint_passport(
        rt.keyring, rt.settings.issuer, token.sub, visas, lifetime, audience=audience, now=now, not_after_visas=True
    )
    expires_at = jwt.decode(passport, options={"verify_signature": False})["exp"]
    rt.store.audit_append(
        {"event": "oidc.passport_issued", "client_id": auth.client.client_id, "sub": token.sub, "visas": len(visas)},
        now,
    )
    return {
        "access_token": passport,
        "issued_token_type": PASSPORT_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": int(expires_at) - now,
    }
