"""Steps the login tests share: start a client's request, log in through a connector, read the passport."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import requests

from broker.core.limits import LimitSettings
from broker.core.models import ACCESS_TOKEN_TYPE, PASSPORT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from broker.core.verify import Verifier
from broker.trust.config import TrustConfig, TrustedBroker, TrustedIssuer, own_jwks_url
from broker.trust.settings import JwksFetchSettings
from tests.login.browser import Browser, origin, query_of
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, pkce_pair, redeem


def start_authorization(
    browser: Browser,
    broker: BrokerProcess,
    client: Client,
    state: str = "client-state",
    scope: str = "openid profile email ga4gh_passport_v1",
) -> tuple[requests.Response, str]:
    """The client sends the browser to our /authorize (code + PKCE); returns the answer and the verifier."""
    verifier, challenge = pkce_pair()
    response = browser.get(
        broker.url("/authorize"),
        response_type="code",
        client_id=client.client_id,
        redirect_uri=client.redirect_uri,
        scope=scope,
        state=state,
        nonce="client-nonce",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    assert response.status_code == 303, response.text[:500]
    return response, verifier


def login_through(
    broker: BrokerProcess,
    client: Client,
    connector: str,
    idp_origin: str,
    account: str,
    scope: str = "openid profile email ga4gh_passport_v1",
    also: dict[str, str] | None = None,
) -> tuple[Browser, dict[str, Any]]:
    """A fresh browser logs in through ``connector`` as ``account``; the client redeems the code.

    ``also``: the connector to pick on other brokers' login pages met on the way (federation).
    """
    browser = Browser(connectors={origin(broker.issuer): connector, **(also or {})}, accounts={idp_origin: account})
    response, verifier = start_authorization(browser, broker, client, scope=scope)
    final = browser.drive(response, until=client.redirect_uri)
    assert final.status_code == 303, (final.status_code, final.text[:800])
    query = query_of(urljoin(final.url, final.headers["Location"]))
    assert "code" in query, query
    tokens = redeem(broker, client, query["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    return browser, tokens.json()


def userinfo(broker: BrokerProcess, access_token: str) -> dict[str, Any]:
    response = requests.get(broker.url("/userinfo"), headers={"Authorization": f"Bearer {access_token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def passport_of(broker: BrokerProcess, client: Client, access_token: str) -> str:
    """The passport JWT of a token exchange (SPEC-DIGEST 6.3)."""
    data = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": access_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": PASSPORT_TOKEN_TYPE,
    }
    response = requests.post(broker.url("/token"), data=data, auth=client.auth, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def clearinghouse(broker: BrokerProcess, visa_issuers: dict[str, str]) -> Verifier:
    """A clearinghouse (the GA4GH engine) trusting ``broker`` and the visa issuers ``{iss: jku}``."""
    issuers = {iss: TrustedIssuer(iss=iss, jku=frozenset({jku}), pinned={}) for iss, jku in visa_issuers.items()}
    issuers[broker.issuer] = TrustedIssuer(iss=broker.issuer, jku=frozenset({own_jwks_url(broker.issuer)}), pinned={})
    brokers = {broker.issuer: TrustedBroker(iss=broker.issuer, jwks_uri=own_jwks_url(broker.issuer), pinned={})}
    trust = TrustConfig("https://clearinghouse.test.example/", issuers, brokers)
    from broker.trust.jwks import KeyResolver

    return Verifier(trust, KeyResolver(trust, JwksFetchSettings(allow_http_loopback=True)), LimitSettings())
