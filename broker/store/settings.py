"""The ``store:`` settings section: where state lives."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from broker.settings_model import SettingsModel, SettingsProblem


class StoreSettings(SettingsModel):
    """SQLite (one file, the embedded default), Redis (shared) or PostgreSQL (the system of record)."""

    backend: Literal["sqlite", "redis", "postgres"] = Field(
        "sqlite",
        description=(
            "sqlite: one file on this machine. redis: shared by every broker process. "
            "postgres: shared, durable system of record (replicas, failover)."
        ),
    )
    path: str | None = Field(None, description="SQLite file; default <data_dir>/broker.db.")
    url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description=(
            "Redis URL (redis://, rediss:// or unix://) or PostgreSQL URL (postgresql://); may embed a "
            "password, so it is a secret. For PostgreSQL failover list every node and ask for the primary: "
            "postgresql://h1:5432,h2:5432/broker?target_session_attrs=read-write."
        ),
    )
    namespace: str = Field("ga4gh-broker", min_length=1, description="Prefix of every Redis key of this broker.")
    postgres_schema: str = Field(
        "ga4gh_broker",
        pattern=r"^[a-z_][a-z0-9_]{0,39}$",
        description=(
            "postgres: the schema holding the broker's tables (made by `ga4gh-broker store migrate`); "
            "also names the audit NOTIFY channel <schema>_audit."
        ),
    )
    timeout_seconds: float = Field(2.0, gt=0, description="Longest wait for one store call before a 503.")
    pool_min: int = Field(
        1, ge=0, le=1000, description="postgres: connections each broker process keeps open while idle."
    )
    pool_max: int = Field(10, ge=1, le=1000, description="postgres: most connections one broker process opens at once.")
    connect_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=300,
        description="postgres: longest wait to open one connection, per host (libpq counts whole seconds, at least 2).",
    )


def check_store(store: StoreSettings, key: str = "store") -> None:
    """Rules a type cannot say: the URL fits the backend, and the pool bounds are in order."""
    url = store.url.get_secret_value()
    if store.backend == "redis" and not url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsProblem(f"{key}.url", "expected a redis://, rediss:// or unix:// URL")
    if store.backend == "postgres":
        if not url.startswith(("postgresql://", "postgres://")):
            raise SettingsProblem(f"{key}.url", "expected a postgresql:// URL for the postgres backend")
        if store.pool_min > store.pool_max:
            raise SettingsProblem(f"{key}.pool_min", f"must not exceed pool_max ({store.pool_max})")
