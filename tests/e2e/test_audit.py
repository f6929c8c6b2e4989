"""After a grant, an access, a revocation and a refusal across two processes, the audit log is intact
(``ga4gh-broker audit verify`` exits 0) and holds each of them: the grant and the revocation with
actor and reason, and the gateway's allow and deny decisions with dataset, subject and the visas used.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from broker.visas.revocation import log_end
from tests.e2e.deployment import DATASETS, Deployment, exchange_passport, fetch, grant, revoke
from tests.oidc.flow import claims
from tests.support.legacy_store import open_store

DATASET = "E2E-AUDIT"


def _records_since(deployment: Deployment, seq: int) -> list[dict[str, Any]]:
    """The audit events appended after ``seq``, read from the shared store."""
    store = open_store(deployment.settings())
    try:
        return [record.event for record in store.audit_records(seq)]
    finally:
        store.close()


def _head(deployment: Deployment) -> int:
    """The seq of the last audit record now."""
    store = open_store(deployment.settings())
    try:
        return log_end(store)
    finally:
        store.close()


def test_audit_verify_passes_and_the_log_holds_grant_revocation_and_gateway_decisions(
    deployment: Deployment, member_token: str, researcher_token: str
) -> None:
    node1, node2 = deployment.nodes
    researcher, member = deployment.ids["researcher"], deployment.ids["member"]
    before = _head(deployment)

    made = grant(node1, member_token, researcher, DATASET)
    passport = exchange_passport(node1, deployment.client, researcher_token, deployment.gateway_audience)
    [visa_jti] = [
        claims(v)["jti"]
        for v in claims(passport)["ga4gh_passport_v1"]
        if claims(v)["ga4gh_visa_v1"]["value"].endswith("/" + DATASET)
    ]
    allowed = fetch(node2, DATASET, passport)
    assert allowed.status_code == 200 and allowed.content == deployment.files[DATASET]

    revoke(node1, member_token, made["id"], "e2e: audit of a withdrawn grant")
    deadline = time.monotonic() + 2
    while (denied := fetch(node2, DATASET, passport)).status_code != 403:
        assert time.monotonic() < deadline, "the revocation never reached node 2"
        time.sleep(0.05)

    verified = deployment.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK: ") and "chain intact" in verified.stdout

    events = _records_since(deployment, before)
    [created] = [e for e in events if e.get("event") == "grants.create" and e.get("grant") == made["id"]]
    assert (created["actor"], created["identity"], created["dataset"], created["dac"]) == (
        member,
        researcher,
        DATASET,
        "E2E",
    )
    [revoked] = [e for e in events if e.get("event") == "grants.revoke" and e.get("grant") == made["id"]]
    assert (revoked["actor"], revoked["dataset"], revoked["reason"]) == (
        member,
        DATASET,
        "e2e: audit of a withdrawn grant",
    )

    decisions = [e for e in events if e.get("event") == "gateway.decision" and e.get("dataset") == DATASET]
    allows = [e for e in decisions if e["outcome"] == "allow"]
    denies = [e for e in decisions if e["outcome"] == "deny"]
    assert allows and denies, events
    for event in allows + denies:
        assert event["subject"] == researcher
        assert event["object_path"] == DATASETS[DATASET][1]
    assert all(e["visas_used"] == [visa_jti] for e in allows), allows
    assert all(e["reason"] == "allowed" for e in allows)
    assert denies[-1]["reason"] == denied.json()["error"]
    assert denies[-1]["reason"] == "grant_revoked"  # after the revocation, the denial names it
    assert denies[-1]["visas_used"] == []
    # Transfers are counted in memory and written as summaries within audit_flush_seconds (<= 1 s).
    deadline = time.monotonic() + 30
    while not any(
        e.get("event") == "gateway.transfer"
        and e.get("dataset") == DATASET
        and e["outcome"] == "complete"
        and e["bytes_sent"] == e["count"] * len(deployment.files[DATASET])
        for e in _records_since(deployment, before)
    ):
        assert time.monotonic() < deadline, "the transfer summary never reached the log"
        time.sleep(0.2)
    # Order: the grant, then the access it allowed, then the revocation, then the refusal.
    order = [events.index(created), events.index(allows[0]), events.index(revoked), events.index(denies[-1])]
    assert order == sorted(order), order

    # The DAC's view of the same log (another process, over HTTP): the dataset's trail names all of it.
    trail = _trail(deployment, member_token)
    kinds = [item["event"].get("event") for item in trail]
    for kind in ("grants.create", "grants.revoke", "gateway.decision"):
        assert kind in kinds, trail


def _trail(deployment: Deployment, member_token: str) -> list[dict[str, Any]]:
    """``GET /api/dac/datasets/<dataset>/audit`` on node 2, as the DAC member."""
    response = requests.get(
        deployment.nodes[1].url(f"/api/dac/datasets/{DATASET}/audit"),
        headers={"Authorization": f"Bearer {member_token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return list(response.json())
