"""AAI 1.2 token exchange (SPEC-DIGEST 6.3) and the passport verified by the GA4GH engine."""

from __future__ import annotations

from typing import Any

import requests

from broker.core.models import ACCESS_TOKEN_TYPE, PASSPORT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from broker.core.verify import Verifier
from broker.settings import Settings
from broker.trust.config import TrustConfig
from broker.trust.jwks import KeyResolver
from broker.trust.settings import TrustedBrokerSettings, TrustedIssuerSettings, TrustSettings
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, claims, full_login, header

CLEARINGHOUSE = "https://drs.example.org/"


def exchange(broker: BrokerProcess, client: Client, subject: str, **extra: Any) -> requests.Response:
    data = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": PASSPORT_TOKEN_TYPE,
        **extra,
    }
    return requests.post(broker.url("/token"), data=data, auth=client.auth, timeout=10)


def verifier_for(broker: BrokerProcess) -> Verifier:
    """A clearinghouse that trusts this broker (keys pinned from its JWKS)."""
    jwks = requests.get(broker.url("/.well-known/jwks.json"), timeout=10).json()
    settings = Settings(
        issuer=CLEARINGHOUSE,
        trust=TrustSettings(
            brokers=[TrustedBrokerSettings(iss=broker.issuer, jwks=jwks)],
            visa_issuers=[TrustedIssuerSettings(iss=broker.issuer, jwks=jwks)],
        ),
    )
    trust = TrustConfig.from_settings(settings.trust, settings.issuer)
    return Verifier(trust, KeyResolver(trust, settings.trust.fetch), settings.limits)


def test_token_exchange_gives_a_passport_the_ga4gh_engine_accepts(broker: BrokerProcess, app: Client) -> None:
    tokens = full_login(broker, app)
    response = exchange(broker, app, tokens["access_token"], resource=CLEARINGHOUSE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == PASSPORT_TOKEN_TYPE and body["token_type"] == "Bearer"
    assert "no-store" in response.headers["Cache-Control"] and response.headers["Pragma"] == "no-cache"
    passport = body["access_token"]
    assert header(passport)["typ"] == "vnd.ga4gh.passport+jwt"
    assert claims(passport)["aud"] == CLEARINGHOUSE
    result = verifier_for(broker).verify_passport(passport, audience=CLEARINGHOUSE)
    assert result.ok, result.error
    assert result.sub == claims(tokens["access_token"])["sub"]


def test_token_exchange_subject_token_failures_are_invalid_request(
    broker: BrokerProcess, app: Client, other: Client
) -> None:
    tokens = full_login(broker, app)
    at = tokens["access_token"]
    cases = [
        exchange(broker, other, at),  # issued to another client
        exchange(broker, app, at[:-6] + "AAAAAA"),  # bad signature
        exchange(broker, app, tokens["id_token"]),  # not an access token
        exchange(broker, app, "not-a-jwt"),
        exchange(broker, app, at, subject_token_type="urn:ietf:params:oauth:token-type:id_token"),
        exchange(broker, app, at, requested_token_type="urn:ietf:params:oauth:token-type:access_token"),
    ]
    for response in cases:
        assert response.status_code == 400 and response.json()["error"] == "invalid_request", response.text
    no_scope = full_login(broker, app, scope="openid profile")
    assert exchange(broker, app, no_scope["access_token"]).json()["error"] == "invalid_request"
    revoked = full_login(broker, app)
    requests.post(broker.url("/revoke"), data={"token": revoked["access_token"]}, auth=app.auth, timeout=10)
    assert exchange(broker, app, revoked["access_token"]).json()["error"] == "invalid_request"
