"""The broker's store: a small kernel (:mod:`broker.store.kernel`) on SQLite, Redis or PostgreSQL.

:func:`open_kernel` opens the backend the settings name; nothing connects at import. Backends
are imported only when chosen (each needs its own client library).
"""

from __future__ import annotations

from pathlib import Path

from broker.store.base import AuditProblem, AuditRecord, Conflict, Health, StoreError, StoreUnavailable
from broker.store.kernel import Kernel
from broker.store.settings import StoreSettings

__all__ = [
    "AuditProblem",
    "AuditRecord",
    "Conflict",
    "Health",
    "Kernel",
    "StoreError",
    "StoreUnavailable",
    "open_kernel",
]


def open_kernel(store: StoreSettings, sqlite_path: Path) -> Kernel:
    """The kernel ``store`` names: SQLite at ``sqlite_path`` (or ``store.path``), Redis or PostgreSQL at ``store.url``.

    SQLite creates its parent directories (mode 0700) and the file (mode 0600). Redis connects
    lazily: an unreachable server makes calls raise StoreUnavailable, not this.
    """
    if store.backend == "sqlite":
        from broker.store.sqlite_kernel import SQLiteKernel  # optional backend: only the chosen one loads

        return SQLiteKernel(Path(store.path) if store.path else sqlite_path, timeout=store.timeout_seconds)
    if store.backend == "redis":
        from broker.store.redis_kernel import RedisKernel  # optional backend: loads redis-py only when chosen

        return RedisKernel(store.url.get_secret_value(), namespace=store.namespace, timeout=store.timeout_seconds)
    if store.backend == "postgres":
        from broker.store.postgres_kernel import open_postgres  # optional backend: loads psycopg only when chosen

        return open_postgres(store)
    raise StoreError(f"unknown store backend {store.backend!r}")
