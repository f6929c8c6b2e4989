"""Helpers for the key ring tests: settings in a temp data_dir, rings with a driven clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.keys.ring import KeyRing
from broker.keys.settings import KeySettings
from broker.settings import Settings
from tests.support.keys import open_ring
from tests.support.settings import unchecked

# A fixed, realistic instant: tests pass `now` explicitly and never read the wall clock.
T0 = 1_750_000_000
SECRET = "correct horse battery staple, but longer"


def make_settings(data_dir: Path, **keys: Any) -> Settings:
    """Settings with everything under ``data_dir`` and the given ``keys.*`` values."""
    # Unchecked: some tests drive the ring with schedules the loader refuses (a rotation due at once).
    return unchecked(Settings(data_dir=str(data_dir)), keys=KeySettings.model_validate(keys, strict=False))


def file_ring(settings: Settings, **kwargs: Any) -> KeyRing:
    """A file-storage ring with the periodic self-maintenance off (the test drives the clock)."""
    kwargs.setdefault("auto_maintain_seconds", None)
    return open_ring(settings, store=None, **kwargs)  # type: ignore[arg-type]  # file storage never uses it


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")
