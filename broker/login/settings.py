"""The ``login:`` settings section: how researchers log in, and their browser sessions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from broker.settings_model import SettingsModel, SettingsProblem


class ConnectorSettings(SettingsModel):
    """One way to log in: ``local`` (accounts in the store) or ``oidc`` (an upstream IdP)."""

    id: str = Field(description="Unique id of letters, digits, - and _; part of the callback URL.")
    kind: Literal["local", "oidc"] = Field(description="local: accounts kept here. oidc: an upstream OpenID provider.")
    name: str = Field("", description="Shown on the login page.")
    issuer: str | None = Field(
        None, description="oidc: the upstream issuer; discovery is <issuer>/.well-known/openid-configuration."
    )
    client_id: str | None = Field(None, description="oidc: our client id at the upstream.")
    client_secret: SecretStr | None = Field(None, description="oidc: our client secret at the upstream.")
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "email"], description="oidc: scopes asked of the upstream."
    )
    relay_passport: bool = Field(
        False, description="oidc: read ga4gh_passport_v1 from the upstream's userinfo and relay trusted visas."
    )
    affiliation_source: str | None = Field(
        None,
        description="oidc: mint AffiliationAndRole visas from eduPersonScopedAffiliation with this source "
        "(default: the upstream issuer).",
    )
    timeout_seconds: float = Field(5.0, gt=0, description="oidc: longest wait for one call to the upstream.")
    max_response_bytes: int = Field(262_144, gt=0, description="oidc: largest answer accepted from the upstream.")


def _default_connectors() -> list[ConnectorSettings]:
    return [ConnectorSettings(id="local", kind="local", name="Local account")]


class LoginSettings(SettingsModel):
    """Connectors on the login page and the server-side session."""

    connectors: list[ConnectorSettings] = Field(
        default_factory=_default_connectors, description="Ways to log in, in the order the login page shows them."
    )
    session_lifetime_seconds: int = Field(8 * 3600, gt=0, description="Lifetime of a browser session.")
    interaction_lifetime_seconds: int = Field(
        600, gt=0, description="How long a pending authorization request waits for login and consent."
    )


def check_login(login: LoginSettings, key: str = "login") -> None:
    """Connector ids are unique; an oidc connector names its upstream and its client there."""
    seen: set[str] = set()
    for i, c in enumerate(login.connectors):
        where = f"{key}.connectors[{i}]"
        if not c.id or c.id in seen or not c.id.replace("-", "").replace("_", "").isalnum():
            raise SettingsProblem(f"{where}.id", "expected a unique id of letters, digits, - and _")
        seen.add(c.id)
        if c.kind == "oidc":
            if not c.issuer or not c.issuer.startswith(("https://", "http://")):
                raise SettingsProblem(f"{where}.issuer", "required for kind oidc: the upstream issuer URL")
            if not c.client_id:
                raise SettingsProblem(f"{where}.client_id", "required for kind oidc")
