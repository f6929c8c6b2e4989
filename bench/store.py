"""Store throughput against the raw client measured in the same run.

Workloads, each counted in pairs per second from one thread:
  code   an authorization code issued and redeemed (put_ticket + consume_ticket)
  grant  a DAC grant written and read back      (put_grant + get_grant)
Baselines on the same server / the same kind of file:
  Redis  raw redis-py SET + GET round trips
  SQLite raw sqlite3 INSERT OR REPLACE + SELECT, autocommit, WAL + synchronous=FULL
Backends: SQLite in a temp dir; Redis on a redis-server this script starts on a free loopback
port, once with appendfsync everysec and once with appendfsync always.

Run: python bench/store.py [--seconds 1.5]   (total run time stays well under 60 s)
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from broker.dac.records import Grant
from broker.settings import Settings
from broker.store.settings import StoreSettings
from tests.support.legacy_store import Store, open_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rate(step: Callable[[int], object], seconds: float, start: int = 0) -> tuple[float, int]:
    """Calls of ``step`` per second over about ``seconds``, and the next unused index."""
    n = start
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(50):
            step(n)
            n += 1
        now = time.perf_counter()
        if now >= deadline:
            return (n - start) / (now - started), n


def compare(ours: Callable[[int], object], base: Callable[[int], object], seconds: float) -> tuple[float, float]:
    """Best-of-3 rates of ours and of the baseline, measured alternately so drift hits both alike."""
    for i in range(30):  # warm-up: connections, statement cache, scripts loaded
        ours(-i - 1)
        base(-i - 1)
    best_ours = best_base = 0.0
    n_ours = n_base = 0
    for _ in range(3):
        r, n_base = rate(base, seconds / 3, n_base)
        best_base = max(best_base, r)
        r, n_ours = rate(ours, seconds / 3, n_ours)
        best_ours = max(best_ours, r)
    return best_ours, best_base


def code_pair(store: Store) -> Callable[[int], object]:
    def step(i: int) -> object:
        store.put_ticket("code", f"c{i}", {"client_id": "cli-1", "redirect_uri": "https://app.example/cb"}, ttl=60)
        got = store.consume_ticket("code", f"c{i}")
        assert got is not None
        return got

    return step


def grant_pair(store: Store) -> Callable[[int], object]:
    def step(i: int) -> object:
        g = Grant(
            id=f"g{i % 1000}",
            identity_id=f"id-{i % 100}",
            dataset="EGAD00001",
            dac="dac-a",
            granted_by="alice",
            granted_at=i,
            start=i,
            end=i + 86400,
            reason="approved",
        )
        store.put_grant(g)
        got = store.get_grant(g.id)
        assert got == g
        return got

    return step


def redis_baseline(url: str) -> Callable[[int], object]:
    client = redis.Redis.from_url(url)

    def step(i: int) -> object:
        client.set(f"bench:raw:{i}", b"x" * 64)
        return client.get(f"bench:raw:{i}")

    return step


def sqlite_baseline(path: Path) -> Callable[[int], object]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")

    def step(i: int) -> object:
        conn.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (f"k{i}", "x" * 64))
        return conn.execute("SELECT v FROM kv WHERE k = ?", (f"k{i}",)).fetchall()

    return step


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("bench: redis-server not found on PATH (Debian package redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(directory / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                sys.exit("bench: redis-server did not start")
            time.sleep(0.05)
    client.close()
    return proc, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=1.5,
        help="measuring time per figure, each of ours and the baseline (default 1.5)",
    )
    logging.basicConfig(level=logging.ERROR)  # the store warns that everysec can lose 1 s: known here
    seconds = min(max(parser.parse_args().seconds, 0.2), 3.0)
    rows: list[tuple[str, str, float, str, float]] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        tmpdir = Path(tmp)
        # SQLite
        settings = Settings(data_dir=str(tmpdir / "sqlite"), store=StoreSettings(backend="sqlite"))
        store = open_store(settings)
        baseline = sqlite_baseline(tmpdir / "baseline.db")
        for workload, pair in (("code issue+consume", code_pair), ("grant write+read", grant_pair)):
            ours, base = compare(pair(store), baseline, seconds)
            rows.append(("sqlite", workload, ours, "INSERT+SELECT", base))
        store.close()
        # Redis, appendfsync everysec then always, on one server
        proc, url = start_redis(tmpdir)
        try:
            admin = redis.Redis.from_url(url)
            for fsync in ("everysec", "always"):
                admin.config_set("appendfsync", fsync)
                settings = Settings(store=StoreSettings(backend="redis", url=url, namespace=f"bench-{fsync}"))
                store = open_store(settings)
                if not store.health().ok:
                    sys.exit("bench: the Redis store is not ready")
                baseline = redis_baseline(url)
                for workload, pair in (("code issue+consume", code_pair), ("grant write+read", grant_pair)):
                    ours, base = compare(pair(store), baseline, seconds)
                    rows.append((f"redis ({fsync})", workload, ours, "SET+GET", base))
                store.close()
            admin.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    print(
        f"store throughput, pairs/s from one thread (best of 3 alternating runs, {seconds:g} s per figure;\n"
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, redis-py {redis.__version__})"
    )
    print(f"{'backend':<20}{'workload':<22}{'ours/s':>10}  {'baseline':<15}{'base/s':>10}{'ratio':>8}")
    for backend, workload, ours, base_name, base in rows:
        print(f"{backend:<20}{workload:<22}{ours:>10.0f}  {base_name:<15}{base:>10.0f}{ours / base:>8.2f}")
    print(f"(total {time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
