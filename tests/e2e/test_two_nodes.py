"""A grant made on one broker process opens the gateway on another; its revocation closes it within a second.

Real parts only: two ``ga4gh-broker serve`` processes (gunicorn; node 2 with two workers, each
with its own verified-token cache and revocation watcher) sharing one redis-server. The DAC
member acts through ``/api/dac/`` on node 1 with an access token from a browser login; the
researcher's portal (a confidential client, code + PKCE) gets an access token and, by token
exchange, a passport JWT; the data is read from node 2 (issues 6 and 7, "Done when").
"""

from __future__ import annotations

import time
from typing import Any

import requests

from tests.e2e.deployment import (
    DAC_SOURCE,
    DATASET_URL_TEMPLATE,
    Deployment,
    Node,
    exchange_passport,
    fetch,
    grant,
    revoke,
)
from tests.oidc.flow import claims

DATASET = "E2E-FLOW"
POLL_SECONDS = 0.05
REVOCATION_DEADLINE = 1.0
# The policy's reason when no visa for this dataset is held: none of the type at all, or only
# grants for other datasets (other tests of the session grant the same researcher other datasets).
DENY_REASONS = {"missing_visa", "no_matching_visa"}


def _grant_visas(passport: str) -> list[dict[str, Any]]:
    """The ControlledAccessGrants visas for DATASET a passport carries, as (unverified) claims."""
    visas = [claims(v) for v in claims(passport).get("ga4gh_passport_v1", [])]
    return [
        v
        for v in visas
        if v["ga4gh_visa_v1"]["type"] == "ControlledAccessGrants"
        and v["ga4gh_visa_v1"]["value"] == DATASET_URL_TEMPLATE.format(dataset=DATASET)
    ]


def _assert_denied_with_required(response: requests.Response, issuer: str) -> None:
    assert response.status_code == 403, (response.status_code, response.text[:300])
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] in DENY_REASONS, body
    required = body["required"]
    assert required["dataset"] == DATASET and required["action"] == "read"
    visa = required["requires"]["visa"]
    assert visa["type"] == "ControlledAccessGrants"
    assert visa["value"]["one_of"] == [DATASET_URL_TEMPLATE.format(dataset=DATASET)]
    assert visa["source"]["one_of"] == [DAC_SOURCE]
    assert visa["by"]["one_of"] == ["dac"]
    assert visa["issuers"]["one_of"] == [issuer]


def _statuses(node: Node, tokens: dict[str, str]) -> dict[str, int]:
    return {name: fetch(node, DATASET, token).status_code for name, token in tokens.items()}


def test_grant_on_node1_opens_node2_and_revocation_on_node1_denies_on_node2_within_one_second(
    deployment: Deployment, member_token: str, researcher_token: str
) -> None:
    node1, node2 = deployment.nodes
    data = deployment.files[DATASET]
    researcher = deployment.ids["researcher"]

    # Before any grant: 403 with the reason code and what would grant access, for both credentials.
    early_passport = exchange_passport(node1, deployment.client, researcher_token, deployment.gateway_audience)
    assert _grant_visas(early_passport) == []
    for token in (early_passport, researcher_token):
        _assert_denied_with_required(fetch(node2, DATASET, token), deployment.issuer)
    refused = fetch(node2, DATASET, member_token)  # a valid access token without ga4gh_passport_v1
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"

    made = grant(node1, member_token, researcher, DATASET)
    assert made["live"] is True and made["dac"] == "E2E" and made["granted_by"] == deployment.ids["member"]

    passport = exchange_passport(node1, deployment.client, researcher_token, deployment.gateway_audience)
    [visa] = _grant_visas(passport)
    assert visa["sub"] == researcher and visa["iss"] == deployment.issuer
    assert visa["ga4gh_visa_v1"]["value"] == DATASET_URL_TEMPLATE.format(dataset=DATASET)
    assert visa["ga4gh_visa_v1"]["source"] == DAC_SOURCE and visa["ga4gh_visa_v1"]["by"] == "dac"
    assert claims(passport)["aud"] == deployment.gateway_audience

    whole = fetch(node2, DATASET, passport)
    assert whole.status_code == 200, whole.text[:300]
    assert whole.content == data and whole.headers["Content-Length"] == str(len(data))
    assert whole.headers["Cache-Control"] == "private, no-store"
    part = fetch(node2, DATASET, passport, Range="bytes=1000-66535")
    assert part.status_code == 206
    assert part.content == data[1000:66536]
    assert part.headers["Content-Range"] == f"bytes 1000-66535/{len(data)}"
    by_token = fetch(node2, DATASET, researcher_token)
    assert by_token.status_code == 200 and by_token.content == data
    # A passport is a snapshot: the one issued before the grant still carries no grant.
    assert fetch(node2, DATASET, early_passport).status_code == 403

    # Warm both workers of node 2 (fresh connections land on either), so cached verdicts exist to evict.
    tokens = {"passport": passport, "access_token": researcher_token}
    for _ in range(4):
        assert _statuses(node2, tokens) == {"passport": 200, "access_token": 200}

    started = time.monotonic()
    revoked = revoke(node1, member_token, made["id"], "e2e: the researcher withdrew")
    assert revoked["revoked_by"] == deployment.ids["member"] and revoked["live"] is False
    history: list[tuple[float, dict[str, int]]] = []
    while True:
        seen = _statuses(node2, tokens)
        elapsed = time.monotonic() - started
        history.append((round(elapsed, 3), seen))
        if seen == {"passport": 403, "access_token": 403}:
            break
        assert elapsed < REVOCATION_DEADLINE, f"node 2 still serves after a revocation on node 1: {history}"
        time.sleep(POLL_SECONDS)
    # Every worker of node 2 has its own cache and watcher: once the deadline has passed, none may serve.
    time.sleep(max(0.0, started + REVOCATION_DEADLINE - time.monotonic()))
    for _ in range(6):
        for token in tokens.values():
            denied = fetch(node2, DATASET, token)  # a fresh connection: either worker may answer
            assert denied.status_code == 403, (denied.status_code, history)
            assert denied.json()["error"] == "grant_revoked"  # the denial says the grant was revoked
