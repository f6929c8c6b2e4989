"""Issue 13: a finished transfer is counted before its upstream is released, never after.

tests/gateway/test_http_store.py::test_px15_client_disconnect_releases_the_upstream_promptly
reads /metrics as soon as the upstream sees its connection closed; when the gateway closed the
upstream first and counted afterwards, a busy machine could scrape in between. These tests pin
the order in the code itself: at the moment the upstream body (or the file) is closed, the
``gateway_transfers_total`` sample is already there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.gateway.authorize import AccessDecision
from broker.gateway.paths import ObjectRef
from broker.gateway.service import Gateway
from broker.gateway.settings import GatewaySettings

REF = ObjectRef("ds1", "a.bin")


class _Deny:
    """An authorizer the transfer path never calls."""

    def authorize(self, bearer: str | None, dataset: str, object_path: str, action: str = "read") -> AccessDecision:
        return AccessDecision.denied(401, "missing_token", "no")


class _Upstream:
    """An upstream body that records, when it is closed, what the metrics said at that moment."""

    def __init__(self, gateway: Gateway, chunks: int) -> None:
        self.gateway = gateway
        self.chunks = chunks
        self.seen_at_close: dict[str, float] | None = None

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.chunks):
            yield b"z" * 1024

    def close(self) -> None:
        transfers = self.gateway.metrics.transfers
        self.seen_at_close = {r: transfers.value(r) for r in ("aborted", "complete", "broken")}


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return Gateway(GatewaySettings(), _Deny(), data_dir=tmp_path)


def test_px15_aborted_transfer_is_counted_before_the_upstream_is_closed(gateway: Gateway) -> None:
    upstream = _Upstream(gateway, chunks=1000)
    body = gateway._counted(upstream, REF, "alice")  # type: ignore[arg-type]
    assert next(body) == b"z" * 1024
    body.close()  # the client went away: the server closes the body (GeneratorExit inside)
    assert upstream.seen_at_close == {"aborted": 1.0, "complete": 0.0, "broken": 0.0}


def test_px15_complete_transfer_is_counted_before_the_upstream_is_closed(gateway: Gateway) -> None:
    upstream = _Upstream(gateway, chunks=3)
    body = gateway._counted(upstream, REF, "alice")  # type: ignore[arg-type]
    assert sum(len(chunk) for chunk in body) == 3 * 1024
    assert upstream.seen_at_close == {"aborted": 0.0, "complete": 1.0, "broken": 0.0}
    assert gateway.metrics.bytes_streamed.value("ds1") == 3 * 1024


def test_px15_upstream_is_closed_even_when_counting_fails(gateway: Gateway) -> None:
    def failing_audit(event: object) -> None:
        raise RuntimeError("audit store down")

    gateway.audit = failing_audit
    upstream = _Upstream(gateway, chunks=2)
    body = gateway._counted(upstream, REF, "alice")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        list(body)
    assert upstream.seen_at_close is not None  # released all the same
