"""The Redis backups docs/operations.md describes, restored for real: the AOF folder and an RDB snapshot.

Each copy is started as a new redis-server (tests.support.redis_server) and must give back every
record and the whole audit chain the broker wrote to the original.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from broker.store.audit import verify_chain
from broker.store.redis_kernel import RedisKernel
from broker.store.transfer import export
from tests.support.redis_server import RedisServer

T0 = 1_700_000_000
NAMESPACE = "backup-test"


def _kernel(server: RedisServer) -> RedisKernel:
    return RedisKernel(server.url, namespace=NAMESPACE, timeout=5.0)


def _records(kernel: RedisKernel) -> list[str]:
    """Every record and audit line of an export, without its header and trailer (they name times)."""
    out = io.StringIO()
    export(kernel, out)
    return [line for line in out.getvalue().splitlines() if '"type":"header"' not in line and "trailer" not in line]


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def original(tmp_path: Path) -> tuple[RedisServer, list[str]]:
    server = RedisServer(directory=tmp_path / "original").start()
    kernel = _kernel(server)
    try:
        for i in range(30):
            kernel.put("grant", f"g/{i}", {"i": i}, terms=[f"n:{i % 3}"])
            kernel.audit_append({"event": "test.write", "i": i}, T0 + i)
        kernel.put("session", "s1", {"who": "alice"}, expires_at=4_000_000_000)
        expected = _records(kernel)
    finally:
        kernel.close()
    return server, expected


def _check_restored(server: RedisServer, expected: list[str]) -> None:
    kernel = _kernel(server)
    try:
        assert _records(kernel) == expected
        records = list(kernel.audit_records(0))
        assert len(records) == 30 and verify_chain(records) == []
        kernel.audit_append({"event": "after.restore"}, T0 + 100)  # the chain goes on from the restored head
        assert verify_chain(list(kernel.audit_records(0))) == []
    finally:
        kernel.close()


def test_a_copy_of_the_aof_folder_after_a_rewrite_restores_every_record_and_the_chain(
    original: tuple[RedisServer, list[str]], tmp_path: Path
) -> None:
    server, expected = original
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        client.bgrewriteaof()

        def rewritten() -> bool:
            info = client.info("persistence")
            return info["aof_rewrite_in_progress"] == 0 and info["aof_rewrite_scheduled"] == 0

        _until(rewritten, "BGREWRITEAOF")
        folder = client.config_get("appenddirname")["appenddirname"]
        client.close()
        restored_dir = tmp_path / "restored-aof"
        shutil.copytree(server.directory / folder, restored_dir / folder)
    finally:
        server.stop()
    restored = RedisServer(directory=restored_dir).start()
    try:
        _check_restored(restored, expected)
    finally:
        restored.stop()


def test_an_rdb_snapshot_restores_every_record_and_aof_is_switched_on_after(
    original: tuple[RedisServer, list[str]], tmp_path: Path
) -> None:
    server, expected = original
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        before = client.lastsave()
        time.sleep(1.1)  # LASTSAVE has a resolution of one second
        client.bgsave()
        _until(lambda: client.lastsave() > before, "BGSAVE")
        client.close()
        restored_dir = tmp_path / "restored-rdb"
        restored_dir.mkdir()
        shutil.copy2(server.directory / "dump.rdb", restored_dir / "dump.rdb")
    finally:
        server.stop()
    restored = RedisServer(directory=restored_dir, appendonly=False).start()  # first start: load the RDB
    try:
        _check_restored(restored, expected)
        client = redis.Redis(host="127.0.0.1", port=restored.port)
        client.config_set("appendonly", "yes")  # then durable again: Redis writes an AOF from memory
        _until(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, "the first AOF")
        client.close()
        kernel = _kernel(restored)
        try:
            health = kernel.health()
            assert health.ok and not any("appendonly" in w for w in health.warnings), health
        finally:
            kernel.close()
    finally:
        restored.stop()
