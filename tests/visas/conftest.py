"""Fixtures of the visa tests: a real key ring, a real verifier, HTTPS servers on loopback.

- ``ring``: our key ring (file storage in tmp) with one active ES256 key;
- ``issuer_server``: the remote visa issuer's JWKS over HTTPS (trustme CA), key ``remote``;
- ``sources_server``: a permissions API server (same CA) the tests fill per path;
- ``attacker``: a third server that must never be contacted;
- ``verifier``: the clearinghouse over the trust configuration that trusts our own issuer
  and ``REMOTE_ISS`` with ``jku`` exactly the issuer server's JWKS URL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from broker.core.models import CONTROLLED_ACCESS_GRANTS, VISA_TYP
from broker.core.verify import Verifier
from broker.dac.services import DacServices
from broker.identity.records import Identity, IdentityLink
from broker.keys.ring import KeyRing
from broker.settings import Settings
from broker.trust.config import TrustConfig
from broker.trust.jwks import KeyResolver
from broker.trust.keyset import ResolvedKey
from broker.trust.settings import JwksFetchSettings, TrustedIssuerSettings, TrustSettings
from tests.dac.conftest import PEOPLE, Clock, SettingsWithDac, dac_config, kernel_of, services
from tests.support.jwks_server import JwksServer, TestKey
from tests.support.keys import open_ring
from tests.support.legacy_store import Store, open_store

ISSUER = "https://broker.example/"
REMOTE_ISS = "https://rems.example/"
UPSTREAM_ISS = "https://login.example/"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def remote_key() -> TestKey:
    return TestKey.ec("remote")


@pytest.fixture
def issuer_server(ca: trustme.CA, remote_key: TestKey) -> Iterator[JwksServer]:
    with JwksServer(ca=ca) as server:
        server.serve_keys(remote_key)
        yield server


@pytest.fixture
def sources_server(ca: trustme.CA) -> Iterator[JwksServer]:
    with JwksServer(ca=ca) as server:
        yield server


@pytest.fixture
def attacker(ca: trustme.CA) -> Iterator[JwksServer]:
    with JwksServer(ca=ca) as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, issuer_server: JwksServer) -> SettingsWithDac:
    trust = TrustSettings(
        visa_issuers=[TrustedIssuerSettings(iss=REMOTE_ISS, jku=[issuer_server.url("/jwks.json")])],
        fetch=JwksFetchSettings(connect_timeout_seconds=1.0, read_timeout_seconds=1.0),
    )
    return SettingsWithDac(issuer=ISSUER, data_dir=str(tmp_path / "data"), trust=trust, dac=dac_config())


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings)
    for who in PEOPLE:
        s.put_identity(Identity(id=who, created_at=1, email=f"{who}@example.org"))
    s.link_identity(IdentityLink(identity_id="researcher", iss=UPSTREAM_ISS, sub="elixir-user@id", linked_at=1))
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
def ring(settings: Settings, store: Store) -> KeyRing:
    ring = open_ring(settings, store, auto_maintain_seconds=None)
    ring.maintain()
    return ring


@pytest.fixture
def svc(settings: SettingsWithDac, store: Store, clock: Clock) -> DacServices:
    return services(settings, kernel_of(store), clock=clock)


@pytest.fixture
def verifier(settings: Settings, ring: KeyRing, issuer_server: JwksServer) -> Verifier:
    def own() -> dict[str, ResolvedKey]:
        return {kid: ResolvedKey(kid, alg, key) for kid, (alg, key) in ring.public_keys().items()}

    trust = TrustConfig.from_settings(settings.trust, settings.issuer, own_keys=own)
    return Verifier(trust, KeyResolver(trust, settings.trust.fetch, session=issuer_server.session()), settings.limits)


def remote_visa(
    key: TestKey,
    jku: str,
    sub: str = "elixir-user@id",
    *,
    value: str = "https://rems.example/ds/1",
    exp_in: int = 3600,
    **header: Any,
) -> str:
    """A ControlledAccessGrants visa as a remote issuer signs it."""
    now = int(time.time())
    payload = {
        "iss": REMOTE_ISS,
        "sub": sub,
        "iat": now,
        "exp": now + exp_in,
        "jti": f"j-{time.monotonic_ns()}",
        "ga4gh_visa_v1": {
            "type": CONTROLLED_ACCESS_GRANTS,
            "asserted": now - 10,
            "value": value,
            "source": "https://rems.example/dac/1",
            "by": "dac",
        },
    }
    return key.sign(payload, {"jku": jku, "typ": VISA_TYP, **header})
