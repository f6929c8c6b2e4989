"""Federation: broker B logs researchers in through broker A (another process) and relays A's visas unchanged.

IdP (oidc-provider) -> broker A (issuer on ``localhost``) -> broker B (issuer on 127.0.0.1) -> client.
A mints an AffiliationAndRole visa from the IdP's affiliation and relays the IdP's visa; B
trusts A as a visa issuer and relays both, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest

from broker.core.models import AFFILIATION_AND_ROLE, CONTROLLED_ACCESS_GRANTS
from broker.oidc.passwords import hash_secret
from broker.trust.config import own_jwks_url
from tests.login.browser import origin
from tests.login.conftest import IDP_SECRET, LocalhostBroker, app_client
from tests.login.flows import clearinghouse, login_through, passport_of, userinfo
from tests.login.peers import NodeIdp, VisaIssuer
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, claims

B_AT_A_SECRET = "broker-b-at-a-" + "c" * 24
FED_SOURCE = "https://fed.example/"


@pytest.fixture(scope="module")
def broker_a(
    tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int], idp1: NodeIdp, visa_issuer: VisaIssuer
) -> Iterator[BrokerProcess]:
    settings = {
        "login": {
            "connectors": [
                {
                    "id": "idp1",
                    "kind": "oidc",
                    "name": "University IdP",
                    "issuer": idp1.issuer,
                    "client_id": "broker-a",
                    "client_secret": IDP_SECRET,
                    "relay_passport": True,
                    "affiliation_source": FED_SOURCE,
                    "scopes": ["openid", "profile", "eduperson_scoped_affiliation", "ga4gh_passport_v1"],
                }
            ]
        },
        "oidc": {
            "clients": [
                {
                    "client_id": "broker-b",
                    "name": "Broker B",
                    "grant_types": ["authorization_code"],
                    "redirect_uris": [f"http://127.0.0.1:{ports['b']}/login/callback/broker-a"],
                    "scopes": ["openid", "profile", "email", "ga4gh_passport_v1"],
                    "secret_hash": hash_secret(B_AT_A_SECRET, log2_n=10),
                }
            ]
        },
        "trust": {
            "visa_issuers": [{"iss": visa_issuer.iss, "jku": [visa_issuer.jku]}],
            "fetch": {"allow_http_loopback": True},
        },
    }
    process = LocalhostBroker(directory=tmp_path_factory.mktemp("broker-a"), settings=settings, port=ports["a"]).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def broker_b(
    tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int], broker_a: BrokerProcess, visa_issuer: VisaIssuer
) -> Iterator[BrokerProcess]:
    settings = {
        "login": {
            "connectors": [
                {
                    "id": "broker-a",
                    "kind": "oidc",
                    "name": "Broker A",
                    "issuer": broker_a.issuer,
                    "client_id": "broker-b",
                    "client_secret": B_AT_A_SECRET,
                    "relay_passport": True,
                    "scopes": ["openid", "profile", "ga4gh_passport_v1"],
                }
            ]
        },
        "oidc": {"clients": [app_client()]},
        "trust": {
            "visa_issuers": [
                {"iss": broker_a.issuer, "jku": [own_jwks_url(broker_a.issuer)]},
                {"iss": visa_issuer.iss, "jku": [visa_issuer.jku]},
            ],
            "fetch": {"allow_http_loopback": True},
        },
    }
    process = BrokerProcess(directory=tmp_path_factory.mktemp("broker-b"), settings=settings, port=ports["b"]).start()
    yield process
    process.stop()


def test_federation_broker_b_relays_broker_a_visas_unchanged(
    broker_a: BrokerProcess,
    broker_b: BrokerProcess,
    idp1: NodeIdp,
    app: Client,
    visa_issuer: VisaIssuer,
    upstream_visas: dict[str, str],
) -> None:
    _, tokens = login_through(
        broker_b, app, "broker-a", idp1.issuer, "fed-user", also={origin(broker_a.issuer): "idp1"}
    )
    info = userinfo(broker_b, tokens["access_token"])
    visas = info["ga4gh_passport_v1"]
    # The IdP's visa went through A and B unchanged.
    assert upstream_visas["federation"] in visas
    from_a = [v for v in visas if claims(v)["iss"] == broker_a.issuer]
    assert len(from_a) == 1 and len(visas) == 2
    visa_a = claims(from_a[0])
    assert visa_a["ga4gh_visa_v1"]["type"] == AFFILIATION_AND_ROLE
    assert visa_a["ga4gh_visa_v1"]["value"] == "member@fed.example"
    assert visa_a["ga4gh_visa_v1"]["source"] == FED_SOURCE and visa_a["ga4gh_visa_v1"]["by"] == "system"
    assert jwt.get_unverified_header(from_a[0])["jku"] == own_jwks_url(broker_a.issuer)
    # B's account is keyed by A's (iss, sub), not A's account id reused as B's.
    assert visa_a["sub"] != info["sub"]

    passport = passport_of(broker_b, app, tokens["access_token"])
    verifier = clearinghouse(
        broker_b, {broker_a.issuer: own_jwks_url(broker_a.issuer), visa_issuer.iss: visa_issuer.jku}
    )
    result = verifier.verify_passport(passport)
    assert result.ok, result.error
    assert result.rejected == ()
    accepted = {(v.iss, v.visa.type): v.raw for v in result.accepted}
    assert accepted == {
        (broker_a.issuer, AFFILIATION_AND_ROLE): from_a[0],
        (visa_issuer.iss, CONTROLLED_ACCESS_GRANTS): upstream_visas["federation"],
    }
