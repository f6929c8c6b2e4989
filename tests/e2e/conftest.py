"""Session fixtures of the end-to-end tests: one two-node deployment and the people's tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.deployment import Deployment, login, start_deployment
from tests.support.parts import require_binary


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Two ``ga4gh-broker serve`` processes (1 and 2 gunicorn workers) on one real redis-server."""
    require_binary("redis-server", "the two broker processes share a Redis store")
    running = start_deployment(tmp_path_factory.mktemp("e2e"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def member_token(deployment: Deployment) -> str:
    """The DAC member's access token (scope ``dac``), from a real browser login on node 1."""
    tokens = login(deployment.nodes[0], deployment.client, "member", "openid dac")
    assert "dac" in tokens["scope"].split(), tokens
    return str(tokens["access_token"])


@pytest.fixture(scope="session")
def researcher_token(deployment: Deployment) -> str:
    """The researcher's access token (scope ``ga4gh_passport_v1``), from a browser login on node 1."""
    tokens = login(deployment.nodes[0], deployment.client, "researcher", "openid ga4gh_passport_v1")
    return str(tokens["access_token"])
