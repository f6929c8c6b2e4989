"""The ``store:`` settings section: where state lives."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from broker.settings_model import SettingsModel, SettingsProblem


class StoreSettings(SettingsModel):
    """SQLite (one file, the embedded default) or Redis (shared by many processes and machines)."""

    backend: Literal["sqlite", "redis"] = Field(
        "sqlite", description="sqlite: one file on this machine. redis: shared by every broker process."
    )
    path: str | None = Field(None, description="SQLite file; default <data_dir>/broker.db.")
    url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL (redis://, rediss:// or unix://); may embed a password, so it is a secret.",
    )
    namespace: str = Field("ga4gh-broker", min_length=1, description="Prefix of every Redis key of this broker.")
    timeout_seconds: float = Field(2.0, gt=0, description="Longest wait for one store call before a 503.")


def check_store(store: StoreSettings, key: str = "store") -> None:
    """Rules a type cannot say: a Redis store needs a Redis URL."""
    if store.backend == "redis" and not store.url.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
        raise SettingsProblem(f"{key}.url", "expected a redis://, rediss:// or unix:// URL")
