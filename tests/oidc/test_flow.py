"""The whole flow over real HTTP: code + PKCE, ID token, userinfo, refresh, token exchange, revoke."""

from __future__ import annotations

import requests

from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, claims, full_login, header


def test_code_flow_with_pkce_gives_access_id_and_refresh_tokens(broker: BrokerProcess, app: Client) -> None:
    tokens = full_login(broker, app, nonce="n-123")
    assert tokens["token_type"] == "Bearer"
    at, idt = claims(tokens["access_token"]), claims(tokens["id_token"])
    assert header(tokens["access_token"])["typ"] == "at+jwt"
    assert at["iss"] == broker.issuer and at["client_id"] == "app" and at["aud"] == "app"
    assert at["scope"] == "openid ga4gh_passport_v1"
    assert idt["nonce"] == "n-123" and idt["aud"] == "app" and idt["sub"] == at["sub"]
    assert isinstance(idt["auth_time"], int) and idt["at_hash"]
    assert tokens["refresh_token"]


def test_userinfo_returns_sub_and_passport_claim(broker: BrokerProcess, app: Client) -> None:
    tokens = full_login(broker, app)
    response = requests.get(
        broker.url("/userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert response.status_code == 200
    body = response.json()
    assert body["sub"] == claims(tokens["access_token"])["sub"]
    assert body["iss"] == broker.issuer
    assert body["ga4gh_passport_v1"] == []


def test_refresh_rotates_and_revoke_ends_the_grant(broker: BrokerProcess, app: Client) -> None:
    tokens = full_login(broker, app)
    refreshed = requests.post(
        broker.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=app.auth,
        timeout=10,
    )
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    revoked = requests.post(broker.url("/revoke"), data={"token": new["refresh_token"]}, auth=app.auth, timeout=10)
    assert revoked.status_code == 200
    again = requests.post(
        broker.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"]},
        auth=app.auth,
        timeout=10,
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    userinfo = requests.get(
        broker.url("/userinfo"), headers={"Authorization": f"Bearer {new['access_token']}"}, timeout=10
    )
    assert userinfo.status_code == 401
