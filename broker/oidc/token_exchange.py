"""GA4GH AAI 1.2 token exchange (RFC 8693; SPEC-DIGEST 6.3): a passport JWT for an access token.

Ours, as an authlib grant (authlib has no RFC 8693 grant): :class:`TokenExchangeGrant` is
registered on the server like the others, so client authentication and the grant-type check
are authlib's flow. The client must authenticate (never a public client). The subject token
must be one of our own live access tokens, issued to this very client, with scope
``ga4gh_passport_v1``; any failure of the subject token is ``400 invalid_request``
(THREAT-MODEL EPM d). ``resource`` and ``audience`` (each may repeat) become the passport's
``aud``; its ``exp`` is at most the earliest visa's and at most the subject token's (GA-09:
a passport never outlives the access token it was exchanged for).

The passport's ``jti`` is recorded with the access token and the grant (refresh-token family)
it came from (:class:`~broker.oidc.records.PassportIssue`), so revoking that access token
(RFC 7009), the family, or the researcher's consent for the client revokes the passport at
this broker's gateway too (:meth:`~broker.oidc.tokens.AccessTokens.passport_revoked`).
"""

from __future__ import annotations

import uuid
from typing import Any

from authlib.oauth2.rfc6749.errors import UnauthorizedClientError  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.grants import BaseGrant, TokenEndpointMixin  # type: ignore[import-untyped]
from werkzeug.datastructures import MultiDict

from broker.core.issue import mint_passport
from broker.core.jose import parse
from broker.core.models import ACCESS_TOKEN_TYPE, PASSPORT_SCOPE, PASSPORT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from broker.oidc.errors import NO_STORE, OAuthError
from broker.oidc.records import PassportIssue
from broker.oidc.tokens import InvalidToken

MAX_AUDIENCES = 10
MAX_PASSPORT_BYTES = 4 * 1024 * 1024


def audiences(raw: MultiDict[str, str]) -> list[str]:
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


class TokenExchangeGrant(BaseGrant, TokenEndpointMixin):  # type: ignore[misc]  # authlib has no type information
    """RFC 8693 at ``/token``: a passport for one of our access tokens (see the module docstring)."""

    GRANT_TYPE = TOKEN_EXCHANGE_GRANT
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]

    def validate_token_request(self) -> None:
        ctx = self.server.context
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        form = self.request.form
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
            token = ctx.tokens.verify(subject)
        except InvalidToken as exc:
            raise OAuthError("invalid_request", f"subject_token is not a valid access token ({exc.reason}).") from None
        if token.client_id != client.get_client_id():
            raise OAuthError("invalid_request", "subject_token was issued to another client.")
        if PASSPORT_SCOPE not in token.scope:
            raise OAuthError("invalid_request", f"subject_token lacks the {PASSPORT_SCOPE} scope.")
        self.request.client = client
        self.request.credential = token
        self.request.audiences = audiences(self.request.raw)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        ctx = self.server.context
        token = self.request.credential
        found = self.request.audiences
        audience: str | list[str] | None = found[0] if len(found) == 1 else (found or None)
        visas = ctx.visas_for(token.sub)
        now = ctx.now()
        lifetime = min(ctx.settings.passport_lifetime_seconds, token.exp - now)
        if lifetime <= 0:
            raise OAuthError("invalid_request", "subject_token is not a valid access token (expired).")
        jti = f"{token.grant}.{uuid.uuid4().hex}"
        passport = mint_passport(
            ctx.keys,
            ctx.issuer,
            token.sub,
            visas,
            lifetime,
            audience=audience,
            now=now,
            jti=jti,
            not_after_visas=True,
        )
        expires_at = int(parse(passport, max_bytes=MAX_PASSPORT_BYTES, max_depth=16).payload["exp"])
        ctx.repository.passports.put(
            PassportIssue(
                jti=jti,
                grant_id=token.grant,
                access_jti=token.jti,
                identity_id=token.sub,
                client_id=token.client_id,
                expires_at=expires_at,
            )
        )
        event = {"event": "oidc.passport_issued", "client_id": token.client_id, "sub": token.sub, "visas": len(visas)}
        ctx.audit(event, now)
        body = {
            "access_token": passport,
            "issued_token_type": PASSPORT_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": int(expires_at) - now,
        }
        return 200, body, [("Content-Type", "application/json"), *NO_STORE.items()]
