"""The broker's store: a small kernel (:mod:`broker.store.kernel`) on SQLite, Redis or PostgreSQL.

:func:`open_kernel` opens the backend the settings name; nothing connects at import. Backends
are imported only when chosen (each needs its own client library).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from broker.store.base import (
    AuditProblem,
    AuditRecord,
    Client,
    Conflict,
    Consent,
    Grant,
    Health,
    Identity,
    IdentityLink,
    RefreshToken,
    Store,
    StoreError,
    StoreUnavailable,
)
from broker.store.kernel import Kernel
from broker.store.legacy import LegacyStore
from broker.store.settings import StoreSettings

if TYPE_CHECKING:
    from broker.settings import Settings

__all__ = [
    "AuditProblem",
    "AuditRecord",
    "Client",
    "Conflict",
    "Consent",
    "Grant",
    "Health",
    "Identity",
    "IdentityLink",
    "Kernel",
    "RefreshToken",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_kernel",
    "open_store",
]


def open_kernel(store: StoreSettings, sqlite_path: Path) -> Kernel:
    """The kernel ``store`` names: SQLite at ``sqlite_path`` (or ``store.path``), Redis or PostgreSQL at ``store.url``.

    SQLite creates its parent directories (mode 0700) and the file (mode 0600). Redis connects
    lazily: an unreachable server makes calls raise StoreUnavailable, not this.
    """
    if store.backend == "sqlite":
        from broker.store.sqlite_kernel import SQLiteKernel  # the chosen backend only

        return SQLiteKernel(Path(store.path) if store.path else sqlite_path, timeout=store.timeout_seconds)
    if store.backend == "redis":
        from broker.store.redis_kernel import RedisKernel  # the chosen backend only (needs redis-py)

        return RedisKernel(store.url.get_secret_value(), namespace=store.namespace, timeout=store.timeout_seconds)
    if store.backend == "postgres":
        from broker.store.postgres_kernel import open_postgres  # the chosen backend only (needs psycopg)

        return open_postgres(store)
    raise StoreError(f"unknown store backend {store.backend!r}")


def open_store(settings: Settings) -> LegacyStore:
    """The typed store of the first release on the kernel the settings name (while areas move over)."""
    return LegacyStore(open_kernel(settings.store, settings.sqlite_path))
