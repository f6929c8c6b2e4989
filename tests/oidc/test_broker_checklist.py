"""SPEC-DIGEST 9.1, Broker checklist B1 .. B15: one test per item, over real HTTP."""

from __future__ import annotations

import requests

from broker.core.models import ACCESS_TOKEN_TYPE, PASSPORT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, claims, full_login, header
from tests.oidc.test_token_exchange import CLEARINGHOUSE, exchange, verifier_for

REQUIRED_METADATA = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
    "scopes_supported",
    "grant_types_supported",
    "token_endpoint_auth_methods_supported",
    "code_challenge_methods_supported",
    "claims_supported",
    "claims_parameter_supported",
)


def test_b1_discovery_with_reachable_jwks_uri(broker: BrokerProcess) -> None:
    meta = broker.discovery()
    for name in REQUIRED_METADATA:
        assert name in meta, name
    assert {"openid", "ga4gh_passport_v1"} <= set(meta["scopes_supported"])
    assert {"authorization_code", "refresh_token", TOKEN_EXCHANGE_GRANT} <= set(meta["grant_types_supported"])
    assert "ga4gh_passport_v1" in meta["claims_supported"]
    assert requests.get(meta["jwks_uri"], timeout=10).json()["keys"]


def test_b2_oidc_core_code_flow_issues_id_token(broker: BrokerProcess, app: Client) -> None:
    tokens = full_login(broker, app, scope="openid")
    idt = claims(tokens["id_token"])
    assert idt["iss"] == broker.issuer and idt["aud"] == "app" and idt["exp"] > idt["iat"]


def test_b3_access_token_header(broker: BrokerProcess, app: Client) -> None:
    h = header(full_login(broker, app)["access_token"])
    assert h["typ"] == "at+jwt" and h["alg"] in ("RS256", "ES256") and h["kid"]


def test_b4_access_token_payload(broker: BrokerProcess, app: Client) -> None:
    at = claims(full_login(broker, app)["access_token"])
    for name in ("iss", "sub", "iat", "exp", "scope", "jti"):
        assert name in at
    assert {"openid", "ga4gh_passport_v1"} <= set(at["scope"].split())


def test_b5_access_token_aud_contains_client_id(broker: BrokerProcess, app: Client) -> None:
    at = claims(full_login(broker, app)["access_token"])
    aud = at["aud"] if isinstance(at["aud"], list) else [at["aud"]]
    assert "app" in aud


def test_b6_no_ga4gh_claims_in_access_tokens(broker: BrokerProcess, app: Client) -> None:
    at = claims(full_login(broker, app)["access_token"])
    assert "ga4gh_passport_v1" not in at and "ga4gh_visa_v1" not in at


def test_b7_iss_plus_well_known_resolves_to_our_metadata(broker: BrokerProcess, app: Client) -> None:
    iss = claims(full_login(broker, app)["access_token"])["iss"]
    meta = requests.get(iss + ".well-known/openid-configuration", timeout=10).json()
    assert meta["issuer"] == iss


def test_b8_userinfo_returns_passport_claim_with_iss_and_sub(broker: BrokerProcess, app: Client) -> None:
    at = full_login(broker, app)["access_token"]
    body = requests.get(broker.url("/userinfo"), headers={"Authorization": f"Bearer {at}"}, timeout=10).json()
    assert body["iss"] == broker.issuer and body["sub"] and isinstance(body["ga4gh_passport_v1"], list)


def test_b9_no_passport_claim_without_the_scope(broker: BrokerProcess, app: Client) -> None:
    at = full_login(broker, app, scope="openid profile")["access_token"]
    body = requests.get(broker.url("/userinfo"), headers={"Authorization": f"Bearer {at}"}, timeout=10).json()
    assert "ga4gh_passport_v1" not in body


def test_b10_userinfo_for_revoked_token_is_401_invalid_token(broker: BrokerProcess, app: Client) -> None:
    at = full_login(broker, app)["access_token"]
    requests.post(broker.url("/revoke"), data={"token": at}, auth=app.auth, timeout=10)
    response = requests.get(broker.url("/userinfo"), headers={"Authorization": f"Bearer {at}"}, timeout=10)
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "sub" not in response.json()


def test_b11_token_exchange_checks_types_and_subject(broker: BrokerProcess, app: Client) -> None:
    at = full_login(broker, app)["access_token"]
    assert exchange(broker, app, at).status_code == 200
    assert exchange(broker, app, at, requested_token_type=ACCESS_TOKEN_TYPE).json()["error"] == "invalid_request"
    assert exchange(broker, app, at, subject_token_type=PASSPORT_TOKEN_TYPE).json()["error"] == "invalid_request"
    assert exchange(broker, app, "garbage").json()["error"] == "invalid_request"


def test_b12_token_exchange_requires_client_authentication(broker: BrokerProcess, app: Client) -> None:
    at = full_login(broker, app)["access_token"]
    response = requests.post(
        broker.url("/token"),
        data={
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": at,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": PASSPORT_TOKEN_TYPE,
            "client_id": "app",
        },
        timeout=10,
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_b13_exchange_response_shape(broker: BrokerProcess, app: Client) -> None:
    body = exchange(broker, app, full_login(broker, app)["access_token"]).json()
    assert body["issued_token_type"] == PASSPORT_TOKEN_TYPE and body["token_type"] == "Bearer"
    assert body["access_token"].count(".") == 2


def test_b14_passport_header(broker: BrokerProcess, app: Client) -> None:
    h = header(exchange(broker, app, full_login(broker, app)["access_token"]).json()["access_token"])
    assert h["typ"] == "vnd.ga4gh.passport+jwt" and h["alg"] in ("RS256", "ES256") and h["kid"]


def test_b15_passport_payload_and_narrowed_audience(broker: BrokerProcess, app: Client) -> None:
    at = full_login(broker, app)["access_token"]
    plain = claims(exchange(broker, app, at).json()["access_token"])
    for name in ("iss", "sub", "iat", "exp", "jti"):
        assert name in plain
    assert plain["ga4gh_passport_v1"] == []
    narrowed = exchange(broker, app, at, resource=CLEARINGHOUSE).json()["access_token"]
    assert claims(narrowed)["aud"] == CLEARINGHOUSE
    assert verifier_for(broker).verify_passport(narrowed, audience=CLEARINGHOUSE).ok
    two = claims(
        exchange(broker, app, at, audience=["https://a.example/", "https://b.example/"]).json()["access_token"]
    )
    assert two["aud"] == ["https://a.example/", "https://b.example/"]
