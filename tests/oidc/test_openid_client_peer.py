"""The certified RP ``openid-client`` (npm, tests/peers) logs in against the broker (OA-07, B2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, consent, follow, login, query_of
from tests.support.parts import in_ci, require_binary

PEERS = Path(__file__).resolve().parents[1] / "peers"


def _rp(broker: BrokerProcess, app: Client) -> subprocess.Popen[str]:
    node = require_binary("node", "the openid-client peer")
    if not (PEERS / "node_modules" / "openid-client").is_dir():
        message = "REAL PART MISSING: run `npm ci --prefix tests/peers`"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.Popen(
        [node, str(PEERS / "rp.mjs"), broker.issuer, app.client_id, str(app.secret), app.redirect_uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _callback_for(broker: BrokerProcess, authorization_url: str) -> str:
    http = requests.Session()
    response = http.get(authorization_url, allow_redirects=False, timeout=10)
    response = login(http, broker, follow(http, broker, response))
    page = follow(http, broker, follow(http, broker, response))
    response = consent(http, broker, page) if page.status_code == 200 else page
    assert response.status_code == 303
    return response.headers["Location"]


def _run(broker: BrokerProcess, app: Client, tamper: dict[str, str] | None = None) -> dict[str, object]:
    rp = _rp(broker, app)
    try:
        assert rp.stdout is not None and rp.stdin is not None
        first = json.loads(rp.stdout.readline())
        callback = _callback_for(broker, first["authorization_url"] + "&prompt=consent")
        if tamper is not None:
            query = {**query_of(callback), **tamper}
            query = {k: v for k, v in query.items() if v}
            callback = app.redirect_uri + "?" + urlencode(query)
        rp.stdin.write(callback + "\n")
        rp.stdin.flush()
        return json.loads(rp.stdout.readline())
    finally:
        rp.wait(timeout=20)


def test_oa07_openid_client_completes_login_and_userinfo(broker: BrokerProcess, app: Client) -> None:
    result = _run(broker, app)
    assert result["ok"] is True, result
    assert result["claims"]["iss"] == broker.issuer
    assert result["userinfo"]["ga4gh_passport_v1"] == []


@pytest.mark.parametrize("iss", ["https://evil.example/", ""])
def test_oa07_openid_client_rejects_wrong_or_missing_iss(broker: BrokerProcess, app: Client, iss: str) -> None:
    result = _run(broker, app, tamper={"iss": iss})
    assert result["ok"] is False
