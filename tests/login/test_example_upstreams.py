"""The shipped upstream examples (examples/upstreams/) log a researcher in, end to end.

LS Login and Keycloak are not reachable from CI, so a real OpenID provider (npm
``oidc-provider``, tests/peers/idp.mjs) stands in for each. Everything else in the example file
is kept as shipped: the connector's scopes, passport relay and affiliation source, the other
connectors and the trust section. Only what names the real service is pointed at the stand-in:
the connector's issuer and client secret (the client id stays the example's), the broker's
issuer and data folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.core.models import AFFILIATION_AND_ROLE
from tests.login.conftest import app_client
from tests.login.flows import login_through, userinfo
from tests.login.peers import NodeIdp
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, claims
from tests.support.parts import free_port

ROOT = Path(__file__).resolve().parents[2]
STAND_IN_SECRET = "stand-in-secret-" + "s" * 24
CALLBACK = "https://app.example/cb"
APP_SECRET = "login-app-secret-" + "a" * 24


def _example(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The example's settings (as shipped) and its oidc connector."""
    settings = yaml.safe_load((ROOT / "examples" / "upstreams" / name).read_text(encoding="utf-8"))
    (connector,) = [c for c in settings["login"]["connectors"] if c.get("kind") == "oidc"]
    return settings, connector


@pytest.mark.slow
@pytest.mark.parametrize("example", ["ls-login.yaml", "keycloak.yaml"])
def test_the_upstream_example_logs_a_researcher_in_through_a_real_provider_standing_in(
    tmp_path: Path, example: str
) -> None:
    settings, connector = _example(example)
    port = free_port()
    idp = NodeIdp(
        tmp_path / "idp",
        clients=[
            {
                "client_id": connector["client_id"],
                "client_secret": STAND_IN_SECRET,
                "redirect_uris": [f"http://127.0.0.1:{port}/login/callback/{connector['id']}"],
            }
        ],
        accounts={
            "researcher": {
                "name": "Rita Researcher",
                "email": "rita@uni.example",
                "email_verified": True,
                "eduperson_scoped_affiliation": ["member@uni.example"],
                "ga4gh_passport_v1": [],
            }
        },
    ).start()
    try:
        connector["issuer"] = idp.issuer
        connector["client_secret"] = STAND_IN_SECRET
        settings.pop("issuer")
        settings.pop("data_dir")
        settings.setdefault("oidc", {})["clients"] = [
            {**app_client(), "redirect_uris": [CALLBACK]},
        ]
        settings.setdefault("trust", {}).setdefault("fetch", {})["allow_http_loopback"] = True
        broker = BrokerProcess(directory=tmp_path / "broker", settings=settings, port=port).start()
        try:
            client = Client("app", APP_SECRET, CALLBACK)
            _, tokens = login_through(broker, client, connector["id"], idp.issuer, "researcher")
            info = userinfo(broker, tokens["access_token"])
            assert info["name"] == "Rita Researcher" and info["email"] == "rita@uni.example"
            minted = [claims(v) for v in info.get("ga4gh_passport_v1", [])]
            affiliations = {
                (m["ga4gh_visa_v1"]["value"], m["ga4gh_visa_v1"]["source"])
                for m in minted
                if m["ga4gh_visa_v1"]["type"] == AFFILIATION_AND_ROLE
            }
            if connector.get("affiliation_source"):
                # The example asks for eduperson_scoped_affiliation and turns it into visas.
                assert affiliations == {("member@uni.example", connector["affiliation_source"])}
            else:
                assert affiliations == set()
        finally:
            broker.stop()
    finally:
        idp.stop()
