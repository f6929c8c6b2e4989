"""Single-use state under concurrency: threads and processes racing for one record."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from broker.oidc.records import RefreshToken
from broker.store.audit import verify_chain
from tests.store.conftest import Backend
from tests.support.legacy_store import Store

T = TypeVar("T")
THREADS = 16
ROUNDS = 10
ROOT = Path(__file__).resolve().parents[2]


def race(n: int, action: Callable[[int], T]) -> list[T]:
    """Run ``action`` in n threads released at the same instant; their results."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait()
        return action(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_oa16_concurrent_code_redemption_exactly_one_wins(store: Store) -> None:
    for r in range(ROUNDS):
        store.put_ticket("code", f"code-{r}", {"round": r}, ttl=60)
        results = race(THREADS, lambda _i, r=r: store.consume_ticket("code", f"code-{r}"))
        winners = [x for x in results if x is not None]
        assert winners == [{"round": r}], f"round {r}: {len(winners)} winners"


def test_jwt29_concurrent_jti_registration_exactly_one_wins(store: Store) -> None:
    for r in range(ROUNDS):
        results = race(THREADS, lambda i, r=r: store.add_ticket("jti", f"jti-{r}", {"by": i}, ttl=60))
        assert results.count(True) == 1, f"round {r}: {results.count(True)} registrations"
        winner = results.index(True)
        assert store.peek_ticket("jti", f"jti-{r}") == {"by": winner}


def test_oa20_concurrent_refresh_exactly_one_sees_it_unused(store: Store) -> None:
    for r in range(ROUNDS):
        store.put_refresh_token(RefreshToken(f"h{r}", f"fam-{r}", "id-1", "cli-1", "openid", 0, 4_000_000_000))
        results = race(THREADS, lambda _i, r=r: store.use_refresh_token(f"h{r}"))
        assert all(x is not None for x in results)
        assert sum(1 for x in results if x is not None and not x.used) == 1, f"round {r}"


def test_concurrent_audit_appends_form_one_unbroken_chain(store: Store) -> None:
    per_thread = 25
    race(8, lambda i: [store.audit_append({"thread": i, "n": n}, at=n) for n in range(per_thread)])
    records = list(store.audit_records())
    assert [r.seq for r in records] == list(range(1, 8 * per_thread + 1))
    assert verify_chain(records) == []
    assert sorted((r.event["thread"], r.event["n"]) for r in records) == [
        (i, n) for i in range(8) for n in range(per_thread)
    ]


WORKER = """
import json, sys
from broker.settings import Settings
from broker.store.settings import StoreSettings
from tests.support.legacy_store import open_store
spec = json.loads(sys.argv[1])
store = open_store(Settings(data_dir=spec["data_dir"], store=StoreSettings(**spec["store"])))
won = []
for n in range(spec["appends"]):
    store.audit_append({"worker": spec["worker"], "n": n}, at=n)
    key = f"code-{n}"
    if store.consume_ticket("code", key) is not None:
        won.append(key)
print(json.dumps(won))
"""


def test_worker_processes_share_one_store_atomically(backend: Backend) -> None:
    """Several processes on one SQLite file (or one Redis): each code is redeemed once, one chain."""
    appends, workers = 40, 3
    for n in range(appends):
        backend.store.put_ticket("code", f"code-{n}", {"n": n}, ttl=60)
    s = backend.settings
    store_spec = {
        "backend": s.store.backend,
        "url": s.store.url.get_secret_value(),
        "namespace": s.store.namespace,
        "timeout_seconds": 10.0,
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                json.dumps({"worker": w, "appends": appends, "data_dir": s.data_dir, "store": store_spec}),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for w in range(workers)
    ]
    won: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        won.extend(json.loads(out))
    assert sorted(won) == sorted(f"code-{n}" for n in range(appends))  # each exactly once
    records = list(backend.store.audit_records())
    assert len(records) == appends * workers
    assert verify_chain(records) == []


def test_concurrent_audit_appends_share_commits_and_keep_one_unbroken_chain(store: Store) -> None:
    """Group commit (SQLite) or one script per append (Redis): every caller gets its own record,
    seqs are unique and gapless, and the chain verifies; a bad event fails only its own caller."""
    import threading

    from broker.store.audit import verify_chain

    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(25):
            try:
                event: dict[str, object] = {"event": "t", "n": n, "i": i}
                if i == 7 and n == 3:
                    event = {"bad": float("nan")}
                record = store.audit_append(event, 1_700_000_000)
                with lock:
                    results.append(record.seq)
            except ValueError as exc:
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1
    assert sorted(results) == list(range(1, 8 * 25))
    assert verify_chain(list(store.audit_records())) == []


def _open_at(path: str, start_at: float) -> None:
    from broker.store.sqlite_kernel import SQLiteKernel

    while time.time() < start_at:
        pass  # leave the spin within microseconds of the other processes
    SQLiteKernel(path, timeout=5.0).close()


def test_processes_opening_one_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL needs an exclusive lock that SQLite refuses at once, without
    waiting, to a second opener: gunicorn workers and CLI commands racing on a fresh data dir."""
    context = multiprocessing.get_context("spawn")
    for round_ in range(4):
        path = str(tmp_path / f"race{round_}.db")
        start_at = time.time() + 1.0  # after every child has started (spawn costs a few hundred ms)
        workers = [context.Process(target=_open_at, args=(path, start_at)) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=30)
        assert [w.exitcode for w in workers] == [0, 0, 0, 0]
