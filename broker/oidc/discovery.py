"""OpenID Provider metadata (OIDC Discovery 3, RFC 8414 2; SPEC-DIGEST 7.9), validated by authlib.

Every URL comes from the configured issuer, never from the request's Host or X-Forwarded-*
headers (THREAT-MODEL OA-27). :func:`validate` runs authlib's RFC 8414, OpenID Discovery and
RFC 9207 metadata models over the document when the provider is built, so we never serve
metadata those specifications refuse. An ``http`` issuer (allowed by the settings for
development and loopback tests) is validated as if it were ``https``: every other rule holds.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import rfc8414, rfc9207  # type: ignore[import-untyped]
from authlib.oidc.discovery import OpenIDProviderMetadata  # type: ignore[import-untyped]

from broker.core.models import PASSPORT_CLAIM, TOKEN_EXCHANGE_GRANT
from broker.errors import StartupError
from broker.oidc.clients import DEVICE_CODE_GRANT
from broker.oidc.scopes import DEFAULT_SCOPES

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


def metadata(issuer: str) -> dict[str, Any]:
    """The discovery document of the OP at ``issuer``."""
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "userinfo_endpoint": f"{base}/userinfo",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "introspection_endpoint": f"{base}/introspect",
        "revocation_endpoint": f"{base}/revoke",
        "end_session_endpoint": f"{base}/logout",
        "device_authorization_endpoint": f"{base}/device_authorization",
        "scopes_supported": list(DEFAULT_SCOPES),  # the scopes every client gets (oidc/scopes.py)
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", TOKEN_EXCHANGE_GRANT, DEVICE_CODE_GRANT],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "token_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "revocation_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "name",
            "email",
            PASSPORT_CLAIM,
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": False,
        "frontchannel_logout_supported": False,
    }


def validate(document: dict[str, Any]) -> None:
    """Check ``document`` with authlib's RFC 8414, OpenID Discovery and RFC 9207 models; StartupError if refused."""
    issuer = str(document.get("issuer", ""))
    checked = dict(document)
    if issuer.startswith("http://"):
        plain, secure = issuer.rstrip("/"), "https://" + issuer.rstrip("/")[len("http://") :]
        checked = {k: (v.replace(plain, secure, 1) if isinstance(v, str) else v) for k, v in document.items()}
    try:
        OpenIDProviderMetadata(checked).validate(
            metadata_classes=[rfc8414.AuthorizationServerMetadata, rfc9207.AuthorizationServerMetadata]
        )
    except ValueError as exc:
        raise StartupError(f"the OpenID Provider metadata is not valid: {exc}") from None
