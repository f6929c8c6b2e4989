"""Helpers for the key ring tests: settings in a temp data_dir, rings with a driven clock."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from broker.config import KeySettings, Settings
from broker.keys.ring import KeyRing

# A fixed, realistic instant: tests pass `now` explicitly and never read the wall clock.
T0 = 1_750_000_000
SECRET = "correct horse battery staple, but longer"


def make_settings(data_dir: Path, **keys: Any) -> Settings:
    """Settings with everything under ``data_dir`` and the given ``keys.*`` values."""
    return Settings(data_dir=str(data_dir), keys=dataclasses.replace(KeySettings(), **keys))


def file_ring(settings: Settings, **kwargs: Any) -> KeyRing:
    """A file-storage ring with the periodic self-maintenance off (the test drives the clock)."""
    kwargs.setdefault("auto_maintain_seconds", None)
    return KeyRing.open(settings, store=None, **kwargs)  # type: ignore[arg-type]  # file storage never uses it


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")
