"""A backend that cannot answer makes every call raise StoreUnavailable, quickly; and recovers."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from broker.dac.records import Grant
from broker.store.base import StoreError, StoreUnavailable
from tests.store.conftest import Backend, redis_settings, sqlite_settings
from tests.support.legacy_store import Store, open_store
from tests.support.parts import free_port
from tests.support.redis_server import RedisServer

TIMEOUT = 0.5
GRANT = Grant(
    id="g1",
    identity_id="id-1",
    dataset="EGAD1",
    dac="dac-a",
    granted_by="alice",
    granted_at=1,
    start=1,
    end=4_000_000_000,
)


def calls(store: Store) -> dict[str, Callable[[], object]]:
    """One read, one single-use take, one atomic script and one plain write."""
    return {
        "get_grant": lambda: store.get_grant("g1"),
        "consume_ticket": lambda: store.consume_ticket("code", "c1"),
        "use_refresh_token": lambda: store.use_refresh_token("h1"),
        "audit_append": lambda: store.audit_append({"action": "x"}, at=1),
        "put_grant": lambda: store.put_grant(GRANT),
        "health": store.health,
    }


def assert_unavailable_within(call: Callable[[], object], bound: float, name: str) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        call()
    elapsed = time.monotonic() - started
    assert elapsed < bound, f"{name} took {elapsed:.2f} s to fail"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test may kill, stop and restart."""
    server = RedisServer(directory=tmp_path / "redis").start()
    yield server
    if server.process and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


# ---------------------------------------------------------------------------- Redis


def test_ft01_redis_killed_then_restarted_store_recovers_without_reopening(own_redis: RedisServer) -> None:
    store = open_store(redis_settings(own_redis.url, timeout=TIMEOUT))
    try:
        store.put_grant(GRANT)
        own_redis.kill()
        for name, call in calls(store).items():
            assert_unavailable_within(call, TIMEOUT + 0.5, name)
        own_redis.start()  # same port, same directory: AOF brings the data back
        assert store.get_grant("g1") == GRANT
        assert store.health().ok
        record = store.audit_append({"action": "after restart"}, at=2)
        assert record.seq == 1
    finally:
        store.close()


def test_ft02_redis_hang_fails_within_the_timeout_then_recovers(own_redis: RedisServer) -> None:
    store = open_store(redis_settings(own_redis.url, timeout=TIMEOUT))
    try:
        store.put_grant(GRANT)
        assert own_redis.process is not None
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        try:
            for name in ("get_grant", "consume_ticket", "audit_append", "health"):
                assert_unavailable_within(calls(store)[name], TIMEOUT + 0.5, name)
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)
        assert store.get_grant("g1") == GRANT
    finally:
        store.close()


def test_ft01_redis_down_at_start_opens_and_every_call_is_unavailable() -> None:
    store = open_store(redis_settings(f"redis://127.0.0.1:{free_port()}/0", timeout=TIMEOUT))
    try:
        for name, call in calls(store).items():
            assert_unavailable_within(call, TIMEOUT + 0.5, name)
        with pytest.raises(StoreUnavailable):
            list(store.audit_records())
    finally:
        store.close()


def test_ft06_redis_that_may_evict_is_not_ready(own_redis: RedisServer) -> None:
    store = open_store(redis_settings(own_redis.url))
    client = redis.Redis.from_url(own_redis.url)
    try:
        assert store.health().ok is True
        for policy in ("allkeys-lru", "volatile-ttl"):
            client.config_set("maxmemory-policy", policy)
            health = store.health()
            assert health.ok is False
            assert any(f"maxmemory-policy is {policy}" in w and "noeviction" in w for w in health.warnings)
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("appendfsync", "everysec")
        health = store.health()
        assert health.ok is True
        assert any("appendfsync is everysec" in w for w in health.warnings)
    finally:
        client.close()
        store.close()


def test_redis_without_aof_is_ready_with_a_warning(tmp_path: Path) -> None:
    server = RedisServer(directory=tmp_path / "redis", appendonly=False).start()
    store = open_store(redis_settings(server.url))
    try:
        health = store.health()
        assert health.ok is True
        assert any("appendonly is no" in w for w in health.warnings)
    finally:
        store.close()
        server.stop()


def test_ft06_redis_out_of_memory_is_unavailable_never_silent_loss(own_redis: RedisServer) -> None:
    store = open_store(redis_settings(own_redis.url))
    client = redis.Redis.from_url(own_redis.url)
    try:
        store.revoke_token_id("revoked-jti", 4_000_000_000)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(used + 200_000))
        with pytest.raises(StoreUnavailable, match="OOM"):
            for i in range(1000):
                store.put_ticket("filler", str(i), {"pad": "x" * 10_000}, ttl=60)
        assert store.is_token_revoked("revoked-jti") is True  # nothing evicted
    finally:
        client.close()
        store.close()


class ReplySwallowingProxy:
    """A TCP proxy to Redis that forwards every command but can drop the replies (FT-07)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.swallow = False
        self.forwarded = bytearray()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, commands: bool) -> None:
        try:
            while data := src.recv(65536):
                if commands:
                    self.forwarded += data
                if commands or not self.swallow:
                    dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()


def test_ft07_a_code_redemption_whose_reply_is_lost_is_never_retried(redis_server: RedisServer) -> None:
    proxy = ReplySwallowingProxy(redis_server.port)
    settings = redis_settings(f"redis://127.0.0.1:{proxy.port}/0", timeout=TIMEOUT)
    store = open_store(settings)
    try:
        store.put_ticket("code", "c1", {"client_id": "cli-1"}, ttl=60)
        proxy.swallow = True
        proxy.forwarded.clear()
        assert_unavailable_within(lambda: store.consume_ticket("code", "c1"), TIMEOUT + 0.5, "consume_ticket")
        time.sleep(0.1)
        assert proxy.forwarded.count(b"$4\r\nEVAL\r\n") == 1  # the take script: sent once, never re-sent
        proxy.swallow = False
        assert store.consume_ticket("code", "c1") is None  # the lost redemption counted: no second token set
    finally:
        store.close()
        proxy.close()


# ---------------------------------------------------------------------------- SQLite


def test_sqlite_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path)
    settings.sqlite_path.parent.mkdir(parents=True)
    settings.sqlite_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable, match="sqlite"):
        open_store(settings)


def test_sqlite_path_that_cannot_be_a_file_is_unavailable(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path)
    settings.sqlite_path.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(StoreUnavailable, match="sqlite"):
        open_store(settings)


def test_sqlite_locked_by_another_writer_is_unavailable_after_the_timeout(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path, timeout=TIMEOUT)
    store = open_store(settings)
    blocker = sqlite3.connect(settings.sqlite_path, isolation_level=None)
    try:
        store.put_grant(GRANT)
        blocker.execute("BEGIN EXCLUSIVE")
        for name in ("consume_ticket", "use_refresh_token", "audit_append", "put_grant"):
            assert_unavailable_within(calls(store)[name], TIMEOUT + 1.0, name)
        assert store.get_grant("g1") == GRANT  # WAL: readers are not blocked by a writer
        blocker.execute("ROLLBACK")
        assert store.audit_append({"action": "after unlock"}, at=2).seq == 1
    finally:
        blocker.close()
        store.close()


def test_sqlite_store_closed_is_unavailable(tmp_path: Path) -> None:
    store = open_store(sqlite_settings(tmp_path))
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.get_grant("g1")


# ---------------------------------------------------------------------------- both


def test_a_corrupt_stored_record_is_a_store_error_not_a_crash(backend: Backend) -> None:
    backend.store.put_grant(GRANT)
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.settings.sqlite_path)
        conn.execute("UPDATE records SET value = '{\"id\": \"g1\"}' WHERE kind = 'grant' AND key = 'g1'")
        conn.commit()
        conn.close()
    else:
        client = redis.Redis.from_url(backend.settings.store.url.get_secret_value())
        client.hset(f"{backend.settings.store.namespace}:r:grant:g1", "v", '{"id": "g1"}')
        client.close()
    with pytest.raises(StoreError, match="Grant record is corrupt"):
        backend.store.get_grant("g1")
