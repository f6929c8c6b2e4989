"""The store kernel's contract (broker.store.conformance), run on every backend against real parts."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broker.store.conformance import *  # noqa: F403
from broker.store.kernel import Kernel
from broker.store.postgres_kernel import PostgresKernel, migrate
from broker.store.redis_kernel import RedisKernel
from broker.store.sqlite_kernel import SQLiteKernel
from tests.support.postgres_server import shared_postgres
from tests.support.redis_server import RedisServer


def open_sqlite(path: str) -> Kernel:
    return SQLiteKernel(path, timeout=5.0)


def open_redis(url: str, namespace: str) -> Kernel:
    return RedisKernel(url, namespace=namespace, timeout=5.0)


def open_postgres(url: str, schema: str) -> Kernel:
    return PostgresKernel(url, schema=schema, timeout=5.0)


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def kernel_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Kernel]:
    if request.param == "sqlite":
        return functools.partial(open_sqlite, str(tmp_path / "store.db"))
    if request.param == "postgres":
        url, schema = shared_postgres().url, f"conf_{uuid.uuid4().hex}"
        migrate(url, schema)
        return functools.partial(open_postgres, url, schema)
    server: RedisServer = request.getfixturevalue("redis_server")
    return functools.partial(open_redis, server.url, f"conf-{uuid.uuid4().hex}")


@pytest.fixture
def kernel(kernel_opener: Callable[[], Kernel]) -> Iterator[Kernel]:
    opened = kernel_opener()
    yield opened
    opened.close()
