"""Fixtures of the DAC tests: a real SQLite store, two DACs, people in every role, a driven clock.

People (broker identities in the store):
- ``admin``: site admin; ``chair-a``: chair of DAC A; ``member-a``: member of DAC A;
  ``member-b``: member of DAC B; ``researcher`` and ``researcher-2``: no role.
DAC A governs ``EGAD-A1`` exactly and ``A-*`` by pattern; DAC B governs ``EGAD-B1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.dac.services import DacServices, build_services
from broker.dac.settings import DacEntrySettings, DacMemberSettings, DacSettings
from broker.settings import Settings
from broker.store import Store, open_store
from broker.store.base import Grant, Identity

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


@pytest.fixture
def settings(tmp_path: Path) -> SettingsWithDac:
    return SettingsWithDac(issuer=ISSUER, data_dir=str(tmp_path / "data"), dac=dac_config())


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings)
    for who in PEOPLE:
        s.put_identity(Identity(id=who, created_at=T0 - DAY, display_name=who.title(), email=f"{who}@example.org"))
    yield s
    s.close()


@pytest.fixture
def revoked() -> list[Grant]:
    """Grants the on_revoke hook was called with."""
    return []


@pytest.fixture
def svc(settings: SettingsWithDac, store: Store, clock: Clock, revoked: list[Grant]) -> DacServices:
    return build_services(settings, store, clock=clock, on_revoke=revoked.append)
