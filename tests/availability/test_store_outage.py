"""A real ``serve`` whose Redis store hangs (SIGSTOP) under load (issue 11 items 2 and 4).

Keys are sealed in the store (``keys.storage: store``), so the JWKS has a reason to wait on it,
and decision requests read revocations from it and append audit records to it. While the store
hangs, /healthz and the JWKS must stay fast (they need no store), /readyz must answer 503 within
its bound, and the log must say once per process that the store is gone, and once that it is
back, instead of a traceback per failed request.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.availability.attack import Prober, percentile
from tests.availability.deployment import Broker
from tests.support.redis_server import RedisServer

OUTAGE_SECONDS = 8.0
WORKERS = 2

pytestmark = pytest.mark.slow  # real serve processes


@pytest.fixture
def redis_backed(tmp_path: Path) -> Iterator[tuple[Broker, RedisServer]]:
    server = RedisServer(directory=tmp_path / "redis").start()
    broker = Broker(
        tmp_path / "broker",
        settings={
            "server": {
                "workers": WORKERS,
                "threads": 16,
                "store_deadline_seconds": 1.0,
                "store_breaker_seconds": 2.0,
                "readyz_timeout_seconds": 1.0,
            },
            "store": {"backend": "redis", "url": server.url, "timeout_seconds": 2.0},
            "keys": {"storage": "store", "encryption_secret": "availability-test-" + "s" * 24},
        },
    )
    try:
        broker.start()
        yield broker, server
    finally:
        broker.stop()
        if server.process is not None and server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def _hammer(broker: Broker, passport: str, stop: threading.Event, statuses: list[int]) -> None:
    """Decision requests back to back (each reads revocations and appends an audit record)."""
    headers = {"Authorization": f"Bearer {passport}", "X-Original-URI": "/data/ds1/large.bin"}
    with requests.Session() as session:
        while not stop.is_set():
            try:
                statuses.append(session.get(f"{broker.url}/gateway/decision", headers=headers, timeout=10).status_code)
            except requests.RequestException:
                statuses.append(0)


def test_health_and_jwks_stay_fast_readyz_stays_bounded_and_the_log_stays_short_while_the_store_hangs(
    redis_backed: tuple[Broker, RedisServer],
) -> None:
    broker, server = redis_backed
    assert server.process is not None
    passport = broker.passport()
    assert requests.get(f"{broker.url}/.well-known/jwks.json", timeout=5).status_code == 200
    health = Prober("127.0.0.1", broker.port, "/healthz", timeout=5)
    jwks = Prober("127.0.0.1", broker.port, "/.well-known/jwks.json", timeout=5)
    statuses: list[int] = []
    stop = threading.Event()
    hammers = [threading.Thread(target=_hammer, args=(broker, passport, stop, statuses)) for _ in range(12)]
    log_before = len(broker.log_text().splitlines())

    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        for t in hammers:
            t.start()
        health.start()
        jwks.start()
        readyz: list[tuple[float, int]] = []
        ends = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < ends:
            started = time.monotonic()
            status = requests.get(f"{broker.url}/readyz", timeout=10).status_code
            readyz.append((time.monotonic() - started, status))
            time.sleep(0.2)
        health.stop()
        jwks.stop()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    time.sleep(3.0)  # a breaker window and a probe: the store is back
    stop.set()
    for t in hammers:
        t.join(timeout=15)

    report = f"{health.summary()}\n{jwks.summary()}\nreadyz {readyz}\ndecisions {len(statuses)}"
    print(report)
    assert not health.failures() and health.p99() < 1.0, report
    assert not jwks.failures() and jwks.p99() < 1.0, report
    assert all(status == 503 for _, status in readyz), report
    assert percentile([seconds for seconds, _ in readyz], 100) < 2.5, report
    refused = statuses.count(503) + statuses.count(403)
    assert refused > 100, report  # the store was really out for many requests
    assert requests.get(f"{broker.url}/readyz", timeout=5).status_code == 200  # and is back

    outage_log = broker.log_text().splitlines()[log_before:]
    non_access = [line for line in outage_log if " ACCESS " not in line]
    assert not any("Traceback" in line for line in outage_log), "\n".join(non_access[:40])
    started_lines = [line for line in non_access if "store unavailable (redis)" in line]
    ended_lines = [line for line in non_access if "store available again (redis)" in line]
    assert 1 <= len(started_lines) <= WORKERS, "\n".join(non_access)
    assert 1 <= len(ended_lines) <= WORKERS, "\n".join(non_access)
    # Besides those: at most one summarised line per process and minute from other loggers.
    others = [line for line in non_access if line not in started_lines + ended_lines and "WARNING" in line]
    print("\n".join(non_access))
    assert len(others) <= 2 * WORKERS, "\n".join(others)
