"""Fixtures of the trust tests: a trustme CA, real JWKS servers on loopback, test keys, a settable clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme

from broker.trust.settings import JwksFetchSettings
from tests.support.jwks_server import JwksServer, TestKey


class Clock:
    """An injectable clock: a number of seconds that only moves when the test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ec1() -> TestKey:
    return TestKey.ec("ec-1")


@pytest.fixture(scope="session")
def ec2() -> TestKey:
    return TestKey.ec("ec-2")


@pytest.fixture(scope="session")
def rsa1() -> TestKey:
    return TestKey.rsa("rsa-1")


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[JwksServer]:
    """The trusted issuer's HTTPS JWKS server."""
    with JwksServer(ca=ca) as s:
        yield s


@pytest.fixture
def attacker(ca: trustme.CA) -> Iterator[JwksServer]:
    """A second HTTPS server (same CA, so TLS would succeed): it must never be contacted."""
    with JwksServer(ca=ca) as s:
        yield s


@pytest.fixture
def http_server() -> Iterator[JwksServer]:
    """A plain-http JWKS server on 127.0.0.1."""
    with JwksServer() as s:
        yield s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fast() -> JwksFetchSettings:
    """Fetch settings with short timeouts, so failure tests stay quick."""
    return JwksFetchSettings(connect_timeout_seconds=0.5, read_timeout_seconds=0.5)
