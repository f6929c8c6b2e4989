"""Fixtures of the DAC tests: a real store (SQLite, and the session's real redis-server), two DACs,
people in every role, a driven clock.

People (broker identities in the store):
- ``admin``: site admin; ``chair-a``: chair of DAC A; ``member-a``: member of DAC A;
  ``member-b``: member of DAC B; ``researcher`` and ``researcher-2``: no role.
DAC A governs ``EGAD-A1`` exactly and ``A-*`` by pattern; DAC B governs ``EGAD-B1``.

``settings`` (and so ``store`` and ``svc``) runs every service test once per backend; the web
tests (API, pages) override it with SQLite only, since they prove the adapters, not the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from pydantic import SecretStr

from broker.dac.services import DacServices, build_services
from broker.dac.settings import DacEntrySettings, DacMemberSettings, DacSettings
from broker.identity.records import Identity
from broker.settings import Settings
from broker.store.kernel import Kernel
from broker.store.records import Records
from broker.store.settings import StoreSettings
from tests.support.legacy_store import IDENTITIES, LegacyStore, Store, open_store
from tests.support.redis_server import RedisServer

T0 = 1_750_000_000
DAY = 86400
ISSUER = "https://broker.example/"
SOURCE_A = "https://dac.example/dacs/A"
SOURCE_B = "https://dac.example/dacs/B"
PEOPLE = ("admin", "chair-a", "member-a", "member-b", "researcher", "researcher-2")


class Clock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


#: Settings carry the ``dac`` and ``visa_sources`` sections themselves now.
SettingsWithDac = Settings


def dac_config(**overrides: object) -> DacSettings:
    base = DacSettings(
        committees=[
            DacEntrySettings(
                id="A",
                name="DAC A",
                source=SOURCE_A,
                datasets=["EGAD-A1"],
                dataset_patterns=["A-*"],
                members=[DacMemberSettings(identity="chair-a", role="chair"), DacMemberSettings(identity="member-a")],
            ),
            DacEntrySettings(
                id="B",
                name="DAC B",
                source=SOURCE_B,
                datasets=["EGAD-B1"],
                members=[DacMemberSettings(identity="member-b")],
            ),
        ],
        admins=["admin"],
    )
    return base.model_copy(update=overrides)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def store_settings(backend: str, request: pytest.FixtureRequest) -> StoreSettings:
    """SQLite (in the test's data_dir), or the session redis-server under a namespace of this test's own."""
    if backend == "sqlite":
        return StoreSettings()
    server: RedisServer = request.getfixturevalue("redis_server")
    return StoreSettings(backend="redis", url=SecretStr(server.url), namespace=f"t-{uuid.uuid4().hex}")


@pytest.fixture(params=["sqlite", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> SettingsWithDac:
    return SettingsWithDac(
        issuer=ISSUER,
        data_dir=str(tmp_path / "data"),
        dac=dac_config(),
        store=store_settings(request.param, request),
    )


def kernel_of(store: Store) -> Kernel:
    assert isinstance(store, LegacyStore)
    return store.kernel


def services(
    settings: Settings,
    kernel: Kernel,
    *,
    clock: Callable[[], float] | None = None,
    on_revoke: Sequence[Callable[[str], object]] = (),
) -> DacServices:
    """The DAC services as the composition root builds them (identities read from the kernel)."""
    identities: Records[Identity] = Records(kernel, IDENTITIES)
    if clock is None:
        return build_services(settings.dac, settings.issuer, kernel, identities, on_revoke=on_revoke)
    return build_services(settings.dac, settings.issuer, kernel, identities, clock=clock, on_revoke=on_revoke)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings)
    for who in PEOPLE:
        s.put_identity(Identity(id=who, created_at=T0 - DAY, display_name=who.title(), email=f"{who}@example.org"))
    yield s
    s.close()


@pytest.fixture
def kernel(store: Store) -> Kernel:
    return kernel_of(store)


@pytest.fixture
def revoked() -> list[str]:
    """Record ids the on_revoke hook was called with."""
    return []


@pytest.fixture
def svc(settings: SettingsWithDac, kernel: Kernel, clock: Clock, revoked: list[str]) -> DacServices:
    return services(settings, kernel, clock=clock, on_revoke=(revoked.append,))
