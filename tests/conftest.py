"""Session-wide fixtures: the real parts every test suite shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (AOF on, appendfsync always, noeviction)."""
    server = RedisServer(directory=tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
