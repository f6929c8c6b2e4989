"""The ``oidc:`` settings section: the OpenID Provider toward clients."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr

from broker.oidc.scopes import DEFAULT_SCOPES, SCOPES
from broker.settings_model import SettingsModel, SettingsProblem

AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


class DeclaredClientSettings(SettingsModel):
    """An OAuth client declared in the settings file (next to those added by ``clients add``).

    ``secret_hash`` is the hash ``ga4gh-broker clients hash-secret`` prints next to a new secret,
    never the secret itself.
    """

    client_id: str = Field(description="The client's id, unique among clients.")
    redirect_uris: list[str] = Field(default_factory=list, description="Exact redirect URIs (absolute http(s)).")
    name: str = Field("", description="Shown on the consent page.")
    grant_types: list[str] = Field(
        default_factory=lambda: ["authorization_code", "refresh_token"], description="Grants the client may use."
    )
    scopes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES),
        description="Scopes the client may ask for (default: those discovery advertises; `dac` and "
        "`ga4gh_permissions` only when named).",
    )
    auth_method: AuthMethod = Field("client_secret_basic", description="How the client authenticates at /token.")
    secret_hash: SecretStr | None = Field(
        None,
        description="Hash of the client secret (client_secret_* methods), as `ga4gh-broker clients hash-secret` "
        "prints it; never the secret itself.",
    )
    jwks: dict[str, Any] | None = Field(None, description="The client's public keys (private_key_jwt).")
    post_logout_redirect_uris: list[str] = Field(
        default_factory=list, description="Exact URIs RP-initiated logout may return to."
    )
    require_pkce: bool = Field(
        True,
        description="false lets this confidential client send authorization requests without PKCE "
        "(a relaxation of THREAT-MODEL OA-05, logged at every start); a public client always needs PKCE.",
    )


class OidcSettings(SettingsModel):
    """Token lifetimes (short by default), PKCE policy and declared clients."""

    access_token_lifetime_seconds: int = Field(900, gt=0, description="Lifetime of our access tokens.")
    id_token_lifetime_seconds: int = Field(600, gt=0, description="Lifetime of our ID tokens.")
    refresh_token_lifetime_seconds: int = Field(
        14 * 86400, gt=0, description="Absolute lifetime of a refresh-token family (one login)."
    )
    code_lifetime_seconds: int = Field(60, gt=0, le=600, description="Lifetime of an authorization code (<= 600).")
    passport_lifetime_seconds: int = Field(3600, gt=0, description="Longest lifetime of a passport JWT we issue.")
    visa_lifetime_seconds: int = Field(3600, gt=0, description="Lifetime of visas we mint on demand.")
    device_code_lifetime_seconds: int = Field(600, gt=0, description="Lifetime of a device code (RFC 8628).")
    device_poll_interval_seconds: int = Field(5, gt=0, description="Least time between two device-code polls.")
    refresh_retry_grace_seconds: int = Field(
        30,
        ge=0,
        le=300,
        description="A refresh token presented again this soon after its first use, by the same client, before "
        "its successor is used, is a retry whose answer was lost: it gets the same successor. Later, it is reuse "
        "and revokes the grant. 0: no retry.",
    )
    require_pkce: bool = Field(
        True,
        description="PKCE S256 is required of every client (THREAT-MODEL OA-05, RFC 9700 2.1.1). false relaxes "
        "it for every confidential client (public clients always need it); prefer the per-client "
        "require_pkce: false. Every relaxation is logged at start.",
    )
    clients: list[DeclaredClientSettings] = Field(default_factory=list, description="Clients declared here.")


def check_oidc(oidc: OidcSettings, max_token_lifetime_seconds: int, key: str = "oidc") -> None:
    """Lifetimes short enough for the key ring to keep their keys; declared clients are sane."""
    for name in (
        "access_token_lifetime_seconds",
        "id_token_lifetime_seconds",
        "passport_lifetime_seconds",
        "visa_lifetime_seconds",
    ):
        if getattr(oidc, name) > max_token_lifetime_seconds:
            raise SettingsProblem(f"{key}.{name}", "must not exceed keys.max_token_lifetime_seconds")
    seen: set[str] = set()
    for i, c in enumerate(oidc.clients):
        where = f"{key}.clients[{i}]"
        if not c.client_id or c.client_id in seen:
            raise SettingsProblem(f"{where}.client_id", "expected a non-empty client_id, unique among clients")
        seen.add(c.client_id)
        if c.auth_method in ("client_secret_basic", "client_secret_post") and not c.secret_hash:
            raise SettingsProblem(f"{where}.secret_hash", f"required for auth_method {c.auth_method}")
        if c.auth_method == "none" and not c.require_pkce:
            raise SettingsProblem(f"{where}.require_pkce", "a public client (auth_method none) always needs PKCE")
        if c.auth_method == "private_key_jwt" and not c.jwks:
            raise SettingsProblem(f"{where}.jwks", "required for auth_method private_key_jwt")
        for j, scope in enumerate(c.scopes):
            if scope not in SCOPES:
                raise SettingsProblem(f"{where}.scopes[{j}]", f"expected one of {', '.join(SCOPES)}, got {scope!r}")
        for j, uri in enumerate(c.redirect_uris + c.post_logout_redirect_uris):
            if not uri.startswith(("https://", "http://")) or "#" in uri:
                raise SettingsProblem(f"{where}.redirect_uris[{j}]", "expected an absolute http(s) URL, no fragment")
