"""Real peers shared by the login tests: two oidc-provider IdPs, a fake IdP, a visa issuer and a broker.

Ports of the brokers are chosen first, so the IdPs can be started with our redirect URIs
registered and the brokers with the IdPs' issuers configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from broker.oidc.passwords import hash_secret
from tests.login.fake_idp import CLIENT_ID as FAKE_CLIENT_ID
from tests.login.fake_idp import CLIENT_SECRET as FAKE_CLIENT_SECRET
from tests.login.fake_idp import FakeIdp
from tests.login.peers import NodeIdp, VisaIssuer
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import PASSWORD, Client
from tests.support.parts import free_port

CALLBACK = "https://app.example/cb"
APP_SECRET = "login-app-secret-" + "a" * 24
IDP_SECRET = "broker-at-idp-secret-" + "b" * 24
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
AFFILIATION_SOURCE = "https://uni.example/"
RP05_TENANTS = ("rp05-issuer", "rp05-token", "rp05-jwks", "rp05-authz")


@dataclass
class LocalhostBroker(BrokerProcess):
    """A broker whose issuer names ``localhost``: browsers keep its cookies apart from 127.0.0.1's."""

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.port}/"


def app_client(client_id: str = "app") -> dict[str, Any]:
    return {
        "client_id": client_id,
        "name": "Research App",
        "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code", "refresh_token", EXCHANGE],
        "scopes": ["openid", "profile", "email", "ga4gh_passport_v1"],
        "secret_hash": hash_secret(APP_SECRET, log2_n=10),
    }


def idp_connector(connector_id: str, idp: NodeIdp, **fields: Any) -> dict[str, Any]:
    return {
        "id": connector_id,
        "kind": "oidc",
        "issuer": idp.issuer,
        "client_id": "broker-main",
        "client_secret": IDP_SECRET,
        **fields,
    }


@pytest.fixture(scope="session")
def ports() -> dict[str, int]:
    return {"main": free_port(), "a": free_port(), "b": free_port()}


@pytest.fixture(scope="session")
def visa_issuer() -> Iterator[VisaIssuer]:
    issuer = VisaIssuer(iss="https://visas.test.example/").start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="session")
def stray_issuer() -> Iterator[VisaIssuer]:
    """A visa issuer no broker trusts."""
    issuer = VisaIssuer(iss="https://stray.test.example/").start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="session")
def upstream_visas(visa_issuer: VisaIssuer, stray_issuer: VisaIssuer) -> dict[str, str]:
    """The visas the IdP releases in ga4gh_passport_v1: one trusted, the others not to be relayed."""
    return {
        "trusted": visa_issuer.visa("alice-idp", "https://ega.example/datasets/EGAD0001"),
        "jku_not_allowed": visa_issuer.visa(
            "alice-idp", "https://ega.example/datasets/EGAD0002", jku="http://127.0.0.1:9/evil-jwks.json"
        ),
        "untrusted_issuer": stray_issuer.visa("alice-idp", "https://ega.example/datasets/EGAD0003"),
        "expired": visa_issuer.visa("alice-idp", "https://ega.example/datasets/EGAD0004", lifetime=-120),
        "federation": visa_issuer.visa("fed-user", "https://ega.example/datasets/EGAD0005"),
    }


@pytest.fixture(scope="session")
def idp1(
    tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int], upstream_visas: dict[str, str]
) -> Iterator[NodeIdp]:
    clients = [
        {
            "client_id": "broker-main",
            "client_secret": IDP_SECRET,
            "redirect_uris": [f"http://127.0.0.1:{ports['main']}/login/callback/idp1"],
        },
        {
            "client_id": "broker-a",
            "client_secret": IDP_SECRET,
            "redirect_uris": [f"http://localhost:{ports['a']}/login/callback/idp1"],
        },
    ]
    accounts = {
        "alice-idp": {
            "name": "Alice Upstream",
            "email": "alice@uni.example",
            "email_verified": True,
            "eduperson_scoped_affiliation": [
                "faculty@uni.example",
                "staff@uni.example",
                "member@uni.example",
                "member@",
            ],
            "ga4gh_passport_v1": [
                upstream_visas[k] for k in ("trusted", "jku_not_allowed", "untrusted_issuer", "expired")
            ]
            + ["not-a-visa"],
        },
        "carol": {"name": "Carol One", "email": "carol@shared.example", "email_verified": True},
        "dave": {"name": "Dave", "email": "dave@uni.example"},  # not verified: never kept
        "erin": {"name": "Erin", "email": "erin@uni.example"},
        "linker": {
            "name": "Alice at the University",
            "email": "alice@uni.example",
            "eduperson_scoped_affiliation": ["student@uni.example"],
        },
        "xss": {
            "name": "<img src=x onerror=alert(1)>\u202eevil\r\nSet-Cookie: x=1",
            "email": "x@evil.example\r\nBcc: victim@example.org",
        },
        "big": {"name": "B" * 100_000},
        "huge": {"name": "H" * 1_000_000},
        "fed-user": {
            "name": "Fed User",
            "eduperson_scoped_affiliation": ["member@fed.example"],
            "ga4gh_passport_v1": [upstream_visas["federation"]],
        },
    }
    idp = NodeIdp(tmp_path_factory.mktemp("idp1"), clients, accounts).start()
    yield idp
    idp.stop()


@pytest.fixture(scope="session")
def idp2(tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]) -> Iterator[NodeIdp]:
    clients = [
        {
            "client_id": "broker-main",
            "client_secret": IDP_SECRET,
            "redirect_uris": [f"http://127.0.0.1:{ports['main']}/login/callback/idp2"],
        }
    ]
    accounts = {
        "carol": {"name": "Carol Two", "email": "carol@shared.example", "email_verified": True},
        "dave": {"name": "Dave Elsewhere", "email": "dave@uni.example"},
        "rot": {"name": "Rotation"},
    }
    idp = NodeIdp(tmp_path_factory.mktemp("idp2"), clients, accounts).start()
    yield idp
    idp.stop()


@pytest.fixture(scope="session")
def fake_idp() -> Iterator[FakeIdp]:
    fake = FakeIdp()
    fake.tenant("main")
    base = fake.base.replace("127.0.0.1", "localhost")
    fake.tenant("rp05-issuer", issuer=fake.issuer("rp05-issuer") + "/")
    fake.tenant("rp05-token", token_endpoint=f"{base}/t/rp05-token/token")
    fake.tenant("rp05-jwks", jwks_uri="http://192.0.2.10/t/rp05-jwks/jwks")
    fake.tenant("rp05-authz", authorization_endpoint=f"{base}/t/rp05-authz/authorize")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def login_broker(
    tmp_path_factory: pytest.TempPathFactory,
    ports: dict[str, int],
    idp1: NodeIdp,
    idp2: NodeIdp,
    fake_idp: FakeIdp,
    visa_issuer: VisaIssuer,
) -> Iterator[BrokerProcess]:
    fake = {"kind": "oidc", "client_id": FAKE_CLIENT_ID, "client_secret": FAKE_CLIENT_SECRET, "timeout_seconds": 1.0}
    connectors = [
        {"id": "local", "kind": "local", "name": "Local account"},
        idp_connector(
            "idp1",
            idp1,
            name="University IdP",
            relay_passport=True,
            affiliation_source=AFFILIATION_SOURCE,
            scopes=["openid", "profile", "email", "eduperson_scoped_affiliation", "ga4gh_passport_v1"],
        ),
        idp_connector("idp2", idp2, name="Institute IdP"),
        {"id": "fake", "name": "Fake IdP", "issuer": fake_idp.issuer("main"), **fake},
        *({"id": t, "issuer": fake_idp.issuer(t), **fake} for t in RP05_TENANTS),
    ]
    settings = {
        "oidc": {"clients": [app_client()]},
        "login": {"connectors": connectors},
        "trust": {
            "visa_issuers": [{"iss": visa_issuer.iss, "jku": [visa_issuer.jku]}],
            "fetch": {"allow_http_loopback": True, "unknown_kid_cooldown_seconds": 1},
        },
    }
    process = BrokerProcess(
        directory=tmp_path_factory.mktemp("login-broker"), settings=settings, port=ports["main"]
    ).start()
    for user in ("alice", "bob"):
        done = process.cli("users", "add", user, "--name", user.title(), stdin=PASSWORD + "\n")
        assert done.returncode == 0, done.stderr
    yield process
    process.stop()


@pytest.fixture(scope="session")
def app() -> Client:
    return Client("app", APP_SECRET, CALLBACK)
