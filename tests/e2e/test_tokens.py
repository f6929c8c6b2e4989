"""What the gateway on one process makes of tokens handled on another: a revoked access token is
refused at the next request, and a passport addressed to another service is refused outright."""

from __future__ import annotations

import requests

from tests.e2e.deployment import Deployment, exchange_passport, fetch, grant, login

DATASET = "E2E-TOKEN"
AUD_DATASET = "E2E-AUD"


def test_access_token_revoked_on_node1_is_refused_on_node2_at_the_next_request(
    deployment: Deployment, member_token: str
) -> None:
    node1, node2 = deployment.nodes
    grant(node1, member_token, deployment.ids["researcher"], DATASET)
    token = login(node1, deployment.client, "researcher", "openid ga4gh_passport_v1")["access_token"]
    for _ in range(3):  # fresh connections: both workers of node 2 serve it
        served = fetch(node2, DATASET, token)
        assert served.status_code == 200 and served.content == deployment.files[DATASET]

    revoked = requests.post(
        node1.url("/revoke"),
        data={"token": token, "token_type_hint": "access_token"},
        auth=deployment.client.auth,
        timeout=10,
    )
    assert revoked.status_code == 200, revoked.text

    for _ in range(6):  # the very next request, on whichever worker: no waiting for any watcher
        refused = fetch(node2, DATASET, token)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    exchange = requests.post(
        node2.url("/token"),
        auth=deployment.client.auth,
        timeout=10,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "requested_token_type": "urn:ga4gh:params:oauth:token-type:passport",
        },
    )
    assert exchange.status_code == 400 and exchange.json()["error"] == "invalid_request", exchange.text


def test_passport_addressed_to_another_service_is_refused_by_the_gateway(
    deployment: Deployment, member_token: str, researcher_token: str
) -> None:
    node1, node2 = deployment.nodes
    grant(node1, member_token, deployment.ids["researcher"], AUD_DATASET, days=1)
    elsewhere = exchange_passport(node1, deployment.client, researcher_token, "https://elsewhere.example/")
    refused = fetch(node2, AUD_DATASET, elsewhere)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "invalid_token"
    ours = exchange_passport(node1, deployment.client, researcher_token, deployment.gateway_audience)
    served = fetch(node2, AUD_DATASET, ours)
    assert served.status_code == 200 and served.content == deployment.files[AUD_DATASET]
