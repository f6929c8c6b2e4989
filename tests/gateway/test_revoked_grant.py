"""A researcher whose DAC grant was revoked is told so: ``grant_revoked``, not ``missing_visa``.

End to end through the broker's own app (``create_app`` over ``Container.build``): a DAC admin
grants and revokes over the DAC API with real access tokens, the researcher reads through the
gateway's data route and decision endpoint, and ``policy explain`` on a passport of ours gives
the same reason. Someone who never had a grant still gets ``missing_visa``, and a new grant
after the revocation gives access again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from broker.app import container_of, create_app
from broker.cli import main
from broker.container import Container
from broker.core.issue import mint_passport
from broker.identity.records import Identity
from broker.oidc.tokens import mint_access_token
from broker.settings import Settings, load_settings
from tests.support.keys import open_ring
from tests.support.legacy_store import open_store

ISSUER = "https://broker.example/"
SOURCE = "https://dac.example/dacs/A"
DATASET = "EGAD-A1"
CONTENT = b"revocation test bytes\n"
POLICY = f"""
description: One dataset granted by DAC A, for the revocation tests.
datasets:
  {DATASET}:
    description: a dataset DAC A grants
    read:
      visa:
        type: ControlledAccessGrants
        value: const:{ISSUER}datasets/${{dataset}}
        source: const:{SOURCE}
        by: dac
        issuers: ["{ISSUER}"]
"""


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "datasets.yaml").write_text(POLICY, encoding="utf-8")
    (tmp_path / "files" / DATASET).mkdir(parents=True)
    (tmp_path / "files" / DATASET / "reads.txt").write_bytes(CONTENT)
    document: dict[str, Any] = {
        "issuer": ISSUER,
        "data_dir": str(tmp_path / "data"),
        "policy": {"directory": str(tmp_path / "policies")},
        "dac": {
            "committees": [{"id": "A", "name": "DAC A", "source": SOURCE, "datasets": [DATASET]}],
            "admins": ["admin"],
        },
        "gateway": {
            "stores": {"files": {"kind": "directory", "path": str(tmp_path / "files")}},
            "datasets": {DATASET: {"store": "files", "prefix": DATASET}},
        },
    }
    path = tmp_path / "broker.yaml"
    path.write_text(json.dumps(document), encoding="utf-8")  # JSON is YAML
    return path


@pytest.fixture
def broker(settings_file: Path) -> Iterator[tuple[Settings, FlaskClient]]:
    settings = load_settings(settings_file)
    store = open_store(settings)
    open_ring(settings, store, auto_maintain_seconds=None).maintain()
    for person in ("admin", "researcher", "never-granted"):
        store.put_identity(Identity(id=person, created_at=1))
    app = create_app(Container.build(settings, kernel=store.kernel))
    try:
        with app.test_client() as client:
            yield settings, client
    finally:
        store.close()


def _bearer(client: FlaskClient, who: str, scope: tuple[str, ...]) -> dict[str, str]:
    ring = container_of(client.application).keyring
    settings = container_of(client.application).settings
    token, _ = mint_access_token(
        ring, settings, sub=who, client_id="portal", scope=scope, grant=f"g-{who}", now=int(time.time())
    )
    return {"Authorization": f"Bearer {token}"}


def _read(client: FlaskClient, who: str) -> Any:
    return client.get(f"/data/{DATASET}/reads.txt", headers=_bearer(client, who, ("openid", "ga4gh_passport_v1")))


def _decision(client: FlaskClient, who: str) -> Any:
    headers = {**_bearer(client, who, ("openid", "ga4gh_passport_v1")), "X-Original-URI": f"/data/{DATASET}/reads.txt"}
    return client.get("/gateway/decision", headers=headers)


def _grant(client: FlaskClient) -> str:
    admin = _bearer(client, "admin", ("openid", "dac"))
    body = {"identity": "researcher", "dataset": DATASET, "end": int(time.time()) + 30 * 86400}
    created = client.post("/api/dac/grants", json=body, headers=admin)
    assert created.status_code == 201, created.get_data(as_text=True)
    return str(created.get_json()["id"])


def _revoke(client: FlaskClient, grant_id: str) -> None:
    admin = _bearer(client, "admin", ("openid", "dac"))
    revoked = client.post(f"/api/dac/grants/{grant_id}/revoke", json={"reason": "study ended"}, headers=admin)
    assert revoked.status_code == 200, revoked.get_data(as_text=True)


def _explain_argv(settings_file: Path, client: FlaskClient, who: str, tmp_path: Path) -> list[str]:
    """``policy explain`` of a passport we sign now for ``who``, carrying the visas we release for them."""
    container = container_of(client.application)
    passport = mint_passport(container.keyring, ISSUER, who, container.visas_for(who), 600)
    path = tmp_path / f"{who}.jwt"
    path.write_text(passport, encoding="utf-8")
    return ["-c", str(settings_file), "policy", "explain", "--dataset", DATASET, "--passport", str(path)]


def test_a_revoked_grant_is_denied_grant_revoked_at_the_gateway_and_in_policy_explain(
    broker: tuple[Settings, FlaskClient],
    settings_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, client = broker
    grant_id = _grant(client)
    allowed = _read(client, "researcher")
    assert allowed.status_code == 200 and allowed.data == CONTENT

    _revoke(client, grant_id)
    denied = _read(client, "researcher")
    assert denied.status_code == 403
    body = denied.get_json()
    assert body["error"] == "grant_revoked", body
    assert "DAC 'A'" in body["message"] and DATASET in body["message"] and "revoked at" in body["message"]
    assert "study ended" not in json.dumps(body)  # the DAC's own note stays with the DAC
    verdict = _decision(client, "researcher")
    assert verdict.status_code == 403 and verdict.headers["X-Auth-Reason"] == "grant_revoked"

    never = _read(client, "never-granted")
    assert never.status_code == 403 and never.get_json()["error"] == "missing_visa"
    assert _decision(client, "never-granted").headers["X-Auth-Reason"] == "missing_visa"

    argv = _explain_argv(settings_file, client, "researcher", tmp_path)
    capsys.readouterr()
    assert main([*argv, "--json"]) == 3
    explained = json.loads(capsys.readouterr().out)
    assert [r["code"] for r in explained["decision"]["reasons"]] == ["grant_revoked"]
    assert explained["rule"]["reasons"][0]["code"] == "grant_revoked"
    assert main(argv) == 3
    assert "grant_revoked: " in capsys.readouterr().out

    other = _explain_argv(settings_file, client, "never-granted", tmp_path)
    assert main([*other, "--json"]) == 3
    assert [r["code"] for r in json.loads(capsys.readouterr().out)["decision"]["reasons"]] == ["missing_visa"]


def test_a_new_grant_after_a_revocation_gives_access_again(broker: tuple[Settings, FlaskClient]) -> None:
    _, client = broker
    _revoke(client, _grant(client))
    assert _read(client, "researcher").get_json()["error"] == "grant_revoked"
    _grant(client)
    again = _read(client, "researcher")
    assert again.status_code == 200 and again.data == CONTENT
