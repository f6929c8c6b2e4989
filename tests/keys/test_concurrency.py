"""maintain() and rotate() from several processes at once make exactly one change."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from broker.settings import Settings
from tests.keys.conftest import SECRET, T0, make_settings
from tests.support.keys import open_ring
from tests.support.legacy_store import open_store

PROCESSES = 2
ROUNDS = 3


def _run(settings: Settings, ready: Any, go: Any, start_at: Any, action: str, queue: Any) -> None:
    """In a child process: open the ring, wait for the common start instant, act, report the kids seen."""
    store = open_store(settings)
    try:
        ring = open_ring(settings, store, auto_maintain_seconds=None)
        ready.release()
        go.wait(timeout=30)
        while time.time() < start_at.value:
            pass  # spin: the processes leave this loop within microseconds of each other
        if action == "maintain":
            ring.maintain(T0)
        else:
            ring.rotate(now=T0 + 10)
        queue.put(sorted(s.kid for s in ring.states(T0 + 10)))
    except BaseException as exc:
        queue.put(repr(exc))
        raise
    finally:
        store.close()


def _race(settings: Settings, action: str) -> list[list[str]]:
    context = multiprocessing.get_context("spawn")
    queue, ready, go, start_at = context.Queue(), context.Semaphore(0), context.Event(), context.Value("d", 0.0)
    workers = [
        context.Process(target=_run, args=(settings, ready, go, start_at, action, queue)) for _ in range(PROCESSES)
    ]
    for w in workers:
        w.start()
    for _ in workers:
        assert ready.acquire(timeout=30)
    start_at.value = time.time() + 0.05
    go.set()
    results = [queue.get(timeout=30) for _ in workers]
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0, results
    return results


@pytest.mark.parametrize("storage", ["file", "store"])
def test_two_processes_running_maintain_create_exactly_one_first_key(tmp_path: Path, storage: str) -> None:
    for i in range(ROUNDS):
        settings = make_settings(tmp_path / f"round{i}", storage=storage, encryption_secret=SECRET)
        results = _race(settings, "maintain")
        assert all(isinstance(r, list) for r in results), results
        store = open_store(settings)
        try:
            ring = open_ring(settings, store, auto_maintain_seconds=None)
            kids = [s.kid for s in ring.states(T0)]
        finally:
            store.close()
        assert len(kids) == 1
        assert all(r == kids for r in results)


def test_two_processes_rotating_at_once_schedule_one_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", rotate_every_days=0.0)
    store = open_store(settings)
    try:
        open_ring(settings, store, auto_maintain_seconds=None).maintain(T0)
    finally:
        store.close()
    results = _race(settings, "rotate")
    assert results[0] == results[1]
    assert len(results[0]) == 2  # the first key and one waiting key, not two
