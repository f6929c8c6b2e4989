"""What the gateway on one process makes of tokens handled on another: a revoked access token is
refused at the next request, and a passport addressed to another service is refused outright."""

from __future__ import annotations

import time

import requests

from broker.gateway.drs import BASE as DRS_BASE
from broker.gateway.drs import encode_object_id
from broker.gateway.paths import ObjectRef
from broker.oidc.consent import Consents
from broker.oidc.repository import OidcRepository
from broker.store import open_kernel
from tests.e2e.deployment import (
    DATASETS,
    Deployment,
    Node,
    bearer,
    dac_post,
    exchange_passport,
    fetch,
    grant,
    login,
)
from tests.oidc.flow import claims

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


def _granted(node: Node, member_token: str, identity: str, dataset: str) -> None:
    """The researcher holds a live grant of ``dataset`` (made here, or by an earlier test: 409)."""
    body = {"identity": identity, "dataset": dataset, "end": int(time.time()) + 86400, "reason": "e2e: GA-09"}
    made = dac_post(node, member_token, "/grants", body)
    assert made.status_code in (201, 409), made.text


def _drs_access(node: Node, dataset: str, passport: str) -> requests.Response:
    object_id = encode_object_id(ObjectRef(dataset, DATASETS[dataset][1]))
    return requests.get(node.url(f"{DRS_BASE}/objects/{object_id}/access/https"), headers=bearer(passport), timeout=10)


def test_ga09_exchanged_passport_ends_with_its_access_token_grant_and_consent(
    deployment: Deployment, member_token: str
) -> None:
    """Issue 11 item 4: a token-exchange passport never outlives its subject token, and revoking the refresh
    token (RFC 7009) or withdrawing consent makes this broker's gateway and DRS refuse it on every node."""
    node1, node2 = deployment.nodes
    _granted(node1, member_token, deployment.ids["researcher"], DATASET)
    # (1) revocation of the refresh token (the grant's family)
    tokens = login(node1, deployment.client, "researcher", "openid ga4gh_passport_v1")
    passport = exchange_passport(node1, deployment.client, tokens["access_token"], deployment.gateway_audience)
    assert claims(passport)["exp"] <= claims(tokens["access_token"])["exp"]  # GA-09
    for _ in range(3):  # served, and cached as verified by node 2's workers
        assert fetch(node2, DATASET, passport).status_code == 200
    assert _drs_access(node2, DATASET, passport).status_code == 200
    revoked = requests.post(
        node1.url("/revoke"),
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        auth=deployment.client.auth,
        timeout=10,
    )
    assert revoked.status_code == 200, revoked.text
    for _ in range(4):
        refused = fetch(node2, DATASET, passport)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_token", refused.text
    assert _drs_access(node2, DATASET, passport).status_code == 401
    # (2) a researcher withdraws consent for the client (what /account does); another person than the
    # session's researcher, whose logins later tests still use
    _granted(node1, member_token, deployment.ids["withdrawer"], DATASET)
    tokens = login(node1, deployment.client, "withdrawer", "openid ga4gh_passport_v1")
    passport = exchange_passport(node1, deployment.client, tokens["access_token"], deployment.gateway_audience)
    assert fetch(node2, DATASET, passport).status_code == 200
    settings = deployment.settings()
    kernel = open_kernel(settings.store, settings.sqlite_path)
    try:
        Consents(OidcRepository(kernel, family_marker_seconds=3600), settings.oidc).withdraw(
            claims(tokens["access_token"])["sub"], deployment.client.client_id
        )
    finally:
        kernel.close()
    assert fetch(node2, DATASET, passport).status_code == 401
    assert _drs_access(node2, DATASET, passport).status_code == 401
