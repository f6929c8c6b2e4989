"""Session-wide fixtures: the real parts every test suite shares."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer


def pytest_configure(config: pytest.Config) -> None:
    """Settings without a data_dir use the user's data folder: point it at a scratch folder so that
    no test (nor any server process a test starts, which inherits the environment) writes there."""
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="ga4gh-broker-test-data-")
    os.environ.pop("STATE_DIRECTORY", None)
    os.environ.pop("BROKER_CONFIG", None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (AOF on, appendfsync always, noeviction)."""
    server = RedisServer(directory=tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
