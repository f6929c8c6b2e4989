"""DeadlineKernel: the kernel contract holds through it, and a hanging store costs one deadline, then nothing.

Both backends, real parts: a redis-server this module owns (SIGSTOP makes it hang) and a SQLite
file that another process holds locked (``BEGIN EXCLUSIVE``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.store.base import StoreUnavailable
from broker.store.conformance import *  # noqa: F403
from broker.store.deadline import DeadlineKernel, remaining_seconds, store_deadline
from broker.store.kernel import Kernel
from broker.store.redis_kernel import RedisKernel
from broker.store.sqlite_kernel import SQLiteKernel
from tests.support.redis_server import RedisServer

# ---------------------------------------------------------------- the contract, through the wrapper


def open_wrapped(backend: str, where: str, namespace: str = "") -> Kernel:
    inner: Kernel
    if backend == "sqlite":
        inner = SQLiteKernel(where, timeout=5.0)
    else:
        inner = RedisKernel(where, namespace=namespace, timeout=5.0)
    return DeadlineKernel(inner, open_seconds=1.0, max_threads=8)


@pytest.fixture(params=["sqlite", "redis"])
def kernel_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Kernel]:
    if request.param == "sqlite":
        return functools.partial(open_wrapped, "sqlite", str(tmp_path / "store.db"))
    server: RedisServer = request.getfixturevalue("redis_server")
    return functools.partial(open_wrapped, "redis", server.url, f"deadline-{uuid.uuid4().hex}")


@pytest.fixture(params=["in-a-request", "outside-requests"])
def kernel(request: pytest.FixtureRequest, kernel_opener: Callable[[], Kernel]) -> Iterator[Kernel]:
    """The wrapped kernel, used inside a (generous) request deadline or outside any."""
    opened = kernel_opener()
    try:
        if request.param == "in-a-request":
            with store_deadline(30):
                yield opened
        else:
            yield opened
    finally:
        opened.close()


# ---------------------------------------------------------------- hanging stores


class Counting:
    """Counts the calls that reach the real kernel (to prove the breaker keeps them away)."""

    def __init__(self, inner: Kernel) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
            return attribute(*args, **kwargs)

        return counted


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory=tmp_path / "redis").start()
    yield server
    if server.process and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


class Hang:
    """Makes a store stop answering, and answer again."""

    def __init__(self, stop: Callable[[], None], resume: Callable[[], None]) -> None:
        self.stop = stop
        self.resume = resume


def _sigstop(server: RedisServer) -> Hang:
    assert server.process is not None
    pid = server.process.pid
    return Hang(lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGCONT))


LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def _locked_by_another_process(path: Path) -> Hang:
    """A second process that holds the SQLite file's write lock until resumed."""
    holder: dict[str, subprocess.Popen[str]] = {}

    def stop() -> None:
        process = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        holder["p"] = process

    def resume() -> None:
        process = holder.pop("p")
        assert process.stdin is not None
        process.stdin.write("\n")
        process.stdin.flush()
        process.wait(timeout=10)

    return Hang(stop, resume)


@pytest.fixture(params=["redis", "sqlite"])
def hanging(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Counting, Hang, Callable[[], Any]]]:
    """A real kernel with a 2 s timeout (counted), how to hang it, and a call that hangs with it.

    Redis hangs for every call (SIGSTOP); a SQLite file locked by another process blocks writers
    only (WAL readers go on), so the call that hangs is a write.
    """
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("own_redis")
        real: Kernel = RedisKernel(server.url, namespace=f"hang-{uuid.uuid4().hex}", timeout=2.0)
        hang = _sigstop(server)
    else:
        real = SQLiteKernel(tmp_path / "store.db", timeout=2.0)
        hang = _locked_by_another_process(tmp_path / "store.db")
    counted = Counting(real)
    real.put("k", "warm", {"v": 1})  # connections open, schema made
    stopped = False

    def call() -> Any:
        return counted.put("k", "x", {"v": 2})

    original_stop = hang.stop

    def tracked_stop() -> None:
        nonlocal stopped
        original_stop()
        stopped = True

    hang.stop = tracked_stop
    try:
        yield counted, hang, call
    finally:
        if stopped:
            with contextlib.suppress(KeyError, ProcessLookupError):
                hang.resume()
        real.close()


def _fails_within(call: Callable[[], Any], seconds: float) -> float:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        call()
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.2f} s to fail"
    return elapsed


def test_a_request_waits_one_deadline_not_one_store_timeout_per_call(
    hanging: tuple[Counting, Hang, Callable[[], Any]],
) -> None:
    counted, hang, _ = hanging
    kernel = DeadlineKernel(counted, open_seconds=30.0)  # type: ignore[arg-type]
    try:
        hang.stop()
        started = time.monotonic()
        with store_deadline(0.5):
            for i in range(5):  # five calls of one request; the store's own timeout is 2 s each
                with pytest.raises(StoreUnavailable):
                    kernel.put("k", f"x{i}", {"v": i})
        assert time.monotonic() - started < 1.2
        assert remaining_seconds() is None  # the scope ended with the request
    finally:
        hang.resume()
        kernel.close()


def test_after_a_failure_calls_fail_at_once_then_one_probe_finds_the_store_back(
    hanging: tuple[Counting, Hang, Callable[[], Any]], caplog: pytest.LogCaptureFixture
) -> None:
    counted, hang, _ = hanging
    clock = [1000.0]
    kernel = DeadlineKernel(counted, open_seconds=5.0, clock=lambda: clock[0])  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="broker.store.outage")
    try:
        hang.stop()
        _fails_within(lambda: kernel.put("k", "a", {"v": 1}), 3.0)  # the store's own 2 s timeout, once
        reached = counted.calls
        for _ in range(50):  # 50 calls during the open window: none waits, none reaches the store
            _fails_within(lambda: kernel.get("k", "warm"), 0.05)
        assert counted.calls == reached
        assert kernel.breaker.state().refused == 50

        clock[0] += 5.0  # the window ends: exactly one of many concurrent calls goes through as the probe
        outcomes: list[float] = []

        def one() -> None:
            started = time.monotonic()
            try:
                kernel.put("k", "b", {"v": 2})
            except StoreUnavailable:
                outcomes.append(time.monotonic() - started)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert len(outcomes) == 8
        assert counted.calls == reached + 1  # the probe only
        assert sum(1 for o in outcomes if o > 1.0) == 1  # the probe waited the store's timeout; 7 did not

        hang.resume()
        clock[0] += 5.0
        kernel.put("k", "c", {"v": 3})  # the next probe finds it back
        assert kernel.breaker.state().state == "closed"
        assert kernel.get("k", "c") == {"v": 3}
    finally:
        kernel.close()
    lines = [r for r in caplog.records if r.name == "broker.store.outage"]
    assert [r.levelname for r in lines] == ["WARNING", "INFO"], [r.getMessage() for r in lines]
    assert "store unavailable" in lines[0].getMessage() and "available again" in lines[1].getMessage()


def test_many_requests_against_a_hanging_store_each_end_at_their_deadline(
    hanging: tuple[Counting, Hang, Callable[[], Any]],
) -> None:
    counted, hang, _ = hanging
    kernel = DeadlineKernel(counted, open_seconds=30.0, max_threads=4)  # type: ignore[arg-type]
    durations: list[float] = []

    def request() -> None:
        started = time.monotonic()
        with store_deadline(0.4):
            for _ in range(3):
                with contextlib.suppress(StoreUnavailable):
                    kernel.put("k", "y", {"v": 1})
        durations.append(time.monotonic() - started)

    try:
        hang.stop()
        threads = [threading.Thread(target=request) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert len(durations) == 20
        assert max(durations) < 0.9, durations  # 20 requests, 4 helpers, a 2 s store timeout: none waited past 0.4 s
    finally:
        hang.resume()
        kernel.close()


def test_answers_that_prove_the_store_is_up_do_not_open_the_breaker(tmp_path: Path) -> None:
    kernel = DeadlineKernel(SQLiteKernel(tmp_path / "s.db", timeout=2.0))
    try:
        for _ in range(3):
            with pytest.raises(ValueError):
                kernel.put("", "k", {"v": 1})  # a bad kind: the caller's mistake
        assert kernel.breaker.state().state == "closed"
        assert kernel.get("k", "absent") is None
    finally:
        kernel.close()


def test_a_call_is_not_started_after_the_deadline(tmp_path: Path) -> None:
    counted = Counting(SQLiteKernel(tmp_path / "s.db", timeout=2.0))
    kernel = DeadlineKernel(counted)  # type: ignore[arg-type]
    try:
        with store_deadline(0.05):
            time.sleep(0.1)
            with pytest.raises(StoreUnavailable, match="deadline"):
                kernel.get("k", "x")
        assert counted.calls == 0
        assert kernel.breaker.state().state == "closed"  # the request ran out of time; the store did nothing wrong
    finally:
        kernel.close()


def test_deadline_scopes_nest_without_extending() -> None:
    with store_deadline(0.5):
        outer = remaining_seconds()
        with store_deadline(10):
            inner = remaining_seconds()
            assert inner is not None and outer is not None and inner <= outer
    assert remaining_seconds() is None
    with pytest.raises(ValueError), store_deadline(0):
        pass
