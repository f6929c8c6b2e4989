"""One broker process shared by the OIDC tests, with declared clients and a local user."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from broker.identity.service import IdentityService
from broker.keys.jwk import public_jwk
from broker.keys.settings import KeySettings
from broker.oidc.passwords import hash_secret
from broker.oidc.provider import OpenIDProvider
from broker.oidc.settings import DeclaredClientSettings, OidcSettings
from broker.settings import Settings
from broker.store.kernel import Kernel
from broker.store.settings import StoreSettings
from broker.web.session import Sessions
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import PASSWORD, Client
from tests.support.keys import open_ring
from tests.support.legacy_store import open_store

CALLBACK = "https://app.example/cb"
NATIVE_CALLBACK = "http://127.0.0.1:53682/callback"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
SECRETS = {
    "app": "app-secret-" + "a" * 32,
    "app-post": "post-secret-" + "b" * 32,
    "other": "other-" + "c" * 32,
    "nopass": "nopass-" + "d" * 32,
    "multi": "multi-" + "e" * 32,
    "brute": "brute-" + "f" * 32,
    "scanner": "scanner-" + "g" * 32,
    "relaxed": "relaxed-" + "h" * 32,
}


@pytest.fixture(scope="session")
def jwt_client_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _client(client_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "client_id": client_id,
        "name": f"App {client_id}",
        "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code", "refresh_token", EXCHANGE, DEVICE],
        "scopes": ["openid", "profile", "email", "ga4gh_passport_v1"],
        "post_logout_redirect_uris": ["https://app.example/bye"],
    }
    if client_id in SECRETS:
        base["secret_hash"] = hash_secret(SECRETS[client_id], log2_n=10)
    base.update(fields)
    return base


@pytest.fixture(scope="session")
def broker(
    tmp_path_factory: pytest.TempPathFactory, jwt_client_key: ec.EllipticCurvePrivateKey
) -> Iterator[BrokerProcess]:
    jwk = {**public_jwk(jwt_client_key.public_key()), "kid": "client-key-1", "alg": "ES256", "use": "sig"}
    settings = {
        "oidc": {
            "clients": [
                _client("app"),
                _client("app-post", auth_method="client_secret_post"),
                _client("other"),
                _client("nopass", scopes=["openid", "profile"]),
                _client(
                    "cli",
                    auth_method="none",
                    redirect_uris=[NATIVE_CALLBACK],
                    grant_types=["authorization_code", "refresh_token", DEVICE],
                ),
                _client("jwtapp", auth_method="private_key_jwt", jwks={"keys": [jwk]}),
                _client("multi", redirect_uris=[CALLBACK, "https://app.example/cb2"]),
                # The one client the operator let skip PKCE (OA-05 relaxation, logged at start).
                _client("relaxed", require_pkce=False),
                # Targets of the rate-limit tests, so their lockouts touch no other test.
                _client("brute"),
                _client("scanner"),
                _client("cli-flood", auth_method="none", redirect_uris=[NATIVE_CALLBACK], grant_types=[DEVICE]),
            ]
        },
    }
    process = BrokerProcess(directory=tmp_path_factory.mktemp("broker"), settings=settings).start()
    for user in ("alice", "bob", "mallory"):
        done = process.cli("users", "add", user, "--name", user.title(), stdin=PASSWORD + "\n")
        assert done.returncode == 0, done.stderr
    yield process
    process.stop()


@pytest.fixture(scope="session")
def app(broker: BrokerProcess) -> Client:
    return Client("app", SECRETS["app"], CALLBACK)


@pytest.fixture(scope="session")
def relaxed(broker: BrokerProcess) -> Client:
    """A confidential client declared with ``require_pkce: false``."""
    return Client("relaxed", SECRETS["relaxed"], CALLBACK)


@pytest.fixture(scope="session")
def other(broker: BrokerProcess) -> Client:
    return Client("other", SECRETS["other"], CALLBACK)


@pytest.fixture(scope="session")
def public_client(broker: BrokerProcess) -> Client:
    return Client("cli", None, NATIVE_CALLBACK)


def dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


class Clock:
    """A clock the test moves (epoch seconds); the OP built by ``op_parts`` reads it."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@dataclass
class OpParts:
    """An OP in this process on a real store (SQLite or Redis) and a real key ring, with its clock."""

    op: OpenIDProvider
    settings: Settings
    kernel: Kernel
    clock: Clock


IN_PROCESS_SECRET = "in-process-secret-" + "s" * 24


def in_process_clients() -> list[DeclaredClientSettings]:
    grants = ["authorization_code", "refresh_token", EXCHANGE, DEVICE]
    scopes = ["openid", "profile", "email", "ga4gh_passport_v1"]
    secret = SecretStr(hash_secret(IN_PROCESS_SECRET, log2_n=10))
    confidential = [
        DeclaredClientSettings(
            client_id=c, redirect_uris=[CALLBACK], grant_types=grants, scopes=scopes, secret_hash=secret
        )
        for c in ("app", "other")
    ]
    public = DeclaredClientSettings(
        client_id="cli", redirect_uris=[NATIVE_CALLBACK], grant_types=[*grants[:2], DEVICE], auth_method="none"
    )
    return [*confidential, public]


@pytest.fixture(params=["sqlite", "redis"])
def op_parts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpParts]:
    """The OP's parts in this process (real store of each kind, real key ring), for tests that move the clock."""
    store_settings = StoreSettings(backend="sqlite")
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        store_settings = StoreSettings(backend="redis", url=server.url, namespace=f"t-{uuid.uuid4().hex}")
    settings = Settings(
        issuer="https://op.example/",
        data_dir=str(tmp_path / "var"),
        store=store_settings,
        keys=KeySettings(rotate_every_days=0),
        oidc=OidcSettings(clients=in_process_clients()),
    )
    store = open_store(settings)
    ring = open_ring(settings, store, auto_maintain_seconds=None)
    ring.maintain()
    clock = Clock()
    kernel = store.kernel
    op = OpenIDProvider(
        settings=settings.oidc,
        issuer=settings.issuer,
        kernel=kernel,
        keys=ring,
        identities=IdentityService(kernel),
        sessions=Sessions(kernel, secure=True, lifetime_seconds=3600),
        visas_for=lambda identity_id: [],
        leeway=settings.limits.clock_leeway_seconds,
        max_json_depth=settings.limits.max_json_depth,
        interaction_lifetime_seconds=600,
        pepper=b"in-process test pepper, 32 bytes",
        clock=clock,
    )
    yield OpParts(op=op, settings=settings, kernel=kernel, clock=clock)
    store.close()
