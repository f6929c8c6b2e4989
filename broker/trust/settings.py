"""The ``trust:`` settings section: who we believe, and how we fetch their keys.

The rules a type cannot say (exact https ``jku`` URLs, pinned keys that can verify, no
duplicate issuers, never our own issuer) are checked by
:meth:`broker.trust.config.TrustConfig.from_settings`, which the settings loader runs, so a
file that ``config check`` accepts is a file the broker starts with.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from broker.settings_model import SettingsModel


class JwksFetchSettings(SettingsModel):
    """The hardened JWKS fetcher: https only, no redirects, bounded in size, keys and time."""

    connect_timeout_seconds: float = Field(2.0, gt=0, description="Longest wait to connect to a JWKS server.")
    read_timeout_seconds: float = Field(3.0, gt=0, description="Longest wait for a JWKS answer after connecting.")
    max_bytes: int = Field(65_536, gt=0, description="Largest JWKS document accepted.")
    max_keys: int = Field(32, gt=0, description="Most keys accepted in one JWKS.")
    cache_ttl_seconds: int = Field(300, gt=0, description="How long a fetched JWKS is used before it is fetched again.")
    stale_if_error_seconds: int = Field(
        3600, ge=0, description="How long a cached JWKS still serves while its server fails."
    )
    unknown_kid_cooldown_seconds: int = Field(
        60, ge=0, description="Least time between two refetches caused by an unknown kid (no refetch storms)."
    )
    allow_http_loopback: bool = Field(
        False, description="Allow plain http, and only to loopback addresses (tests and single-machine setups)."
    )


class TrustedIssuerSettings(SettingsModel):
    """A visa issuer we believe: an exact ``jku`` allow-list and/or pinned keys."""

    iss: str = Field(description="The issuer, exactly as its visas' iss claim spells it.")
    jku: list[str] = Field(default_factory=list, description="Exact JWKS URLs its visas may name (never prefixes).")
    jwks: dict[str, Any] | None = Field(None, description='Pinned keys, inline: {"keys": [...]}.')
    jwks_file: str | None = Field(None, description="Pinned keys, from a JWK Set file.")
    visa_types: list[str] | None = Field(None, description="Visa types it may assert; unset: every standard type.")
    sources: list[str] | None = Field(None, description="Visa sources it may assert; unset: any source.")


class TrustedBrokerSettings(SettingsModel):
    """A broker whose passports (and access tokens) we accept."""

    iss: str = Field(description="The broker's issuer, exactly as its passports' iss claim spells it.")
    jwks_uri: str | None = Field(None, description="Where its JWKS is published (https).")
    jwks: dict[str, Any] | None = Field(None, description='Pinned keys, inline: {"keys": [...]}.')
    jwks_file: str | None = Field(None, description="Pinned keys, from a JWK Set file.")
    identity_binding: Literal["linked", "same_sub"] = Field(
        "linked",
        description=(
            "Which visas of its passports count for the holder. linked (the spec read strictly): only "
            "visas whose iss and sub are the passport's, or that trusted LinkedIdentities visas link to "
            "it. same_sub: also visas from other trusted issuers whose sub is exactly the passport's sub, "
            "because this broker vouches that its sub names one person at every issuer whose visas it "
            "relays (Life Science Login relays REMS visas this way, without LinkedIdentities). Trade-off: "
            "same_sub makes such passports work, but trusts this broker, and every visa issuer you "
            "trust, never to reuse a sub string for two people; choose it only for a broker whose sub is "
            "a global, never-reassigned identifier. A visa of another sub never counts without a link."
        ),
    )


class TrustSettings(SettingsModel):
    """The one trust configuration: visa issuers, brokers, and the JWKS fetcher's bounds."""

    visa_issuers: list[TrustedIssuerSettings] = Field(default_factory=list, description="Visa issuers we believe.")
    brokers: list[TrustedBrokerSettings] = Field(default_factory=list, description="Brokers whose passports we accept.")
    fetch: JwksFetchSettings = Field(default_factory=JwksFetchSettings, description="Bounds of every JWKS fetch.")
