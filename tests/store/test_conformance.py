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


# Known failures, kept visible (strict: the mark must go when the backend is fixed).
KNOWN_FAILURES = {
    ("redis", "test_keys_with_reserved_characters_are_found_and_scanned"): (
        "redis_kernel find/scan pass the percent-encoded sorted-set member to get_many, which encodes it "
        "again: records whose key has a reserved character are never found (fix: unquote the member)"
    ),
    ("redis", "test_longest_names_round_trip_on_every_operation"): "same double encoding in find/scan",
}


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def kernel_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Kernel]:
    known = KNOWN_FAILURES.get((request.param, request.node.originalname))
    if known:
        request.applymarker(pytest.mark.xfail(strict=True, reason=known))
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
