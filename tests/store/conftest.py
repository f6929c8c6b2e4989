"""The contract suite's fixture: every test runs once per backend, against real parts.

``backend`` gives a fresh, empty store (SQLite in tmp_path, or the session redis-server
under a namespace of its own) plus a ``Tamper`` that edits the audit log behind the
store's back, the way someone with write access to the file or the server would.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from broker.settings import Settings
from broker.store.audit import build_record, encode_audit
from broker.store.base import AuditRecord
from broker.store.settings import StoreSettings
from tests.support.legacy_store import Store, open_store
from tests.support.redis_server import RedisServer

BACKENDS = ["sqlite", "redis"]


class Tamper:
    """Direct edits of the stored audit log (no store code involved)."""

    def edit_event(self, seq: int, event: dict[str, object]) -> None:
        raise NotImplementedError

    def replace_record(self, record: AuditRecord) -> None:
        """Overwrite the record at ``record.seq`` with exactly these fields."""
        raise NotImplementedError

    def delete(self, seq: int) -> None:
        raise NotImplementedError

    def swap(self, a: int, b: int) -> None:
        """Make records a and b trade places in the log."""
        raise NotImplementedError

    def insert_after(self, seq: int, record: AuditRecord) -> None:
        """Put a forged record into the log right after ``seq``."""
        raise NotImplementedError


@dataclass
class SQLiteTamper(Tamper):
    path: Path

    def _exec(self, *statements: tuple[str, tuple[object, ...]]) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                conn.execute(sql, params)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def edit_event(self, seq: int, event: dict[str, object]) -> None:
        self._exec(("UPDATE audit SET event = ? WHERE seq = ?", (json.dumps(event), seq)))

    def replace_record(self, record: AuditRecord) -> None:
        self._exec(
            (
                "UPDATE audit SET at = ?, event = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (record.at, json.dumps(record.event), record.prev_hash, record.hash, record.seq),
            )
        )

    def delete(self, seq: int) -> None:
        self._exec(("DELETE FROM audit WHERE seq = ?", (seq,)))

    def swap(self, a: int, b: int) -> None:
        self._exec(
            ("UPDATE audit SET seq = -1 WHERE seq = ?", (a,)),
            ("UPDATE audit SET seq = ? WHERE seq = ?", (a, b)),
            ("UPDATE audit SET seq = ? WHERE seq = -1", (b,)),
        )

    def insert_after(self, seq: int, record: AuditRecord) -> None:
        # Make room by renumbering the later rows (highest first), then insert.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            later = [r[0] for r in conn.execute("SELECT seq FROM audit WHERE seq > ? ORDER BY seq DESC", (seq,))]
            for s in later:
                conn.execute("UPDATE audit SET seq = ? WHERE seq = ?", (s + 1, s))
            conn.execute(
                "INSERT INTO audit (seq, at, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
                (record.seq, record.at, json.dumps(record.event), record.prev_hash, record.hash),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()


@dataclass
class RedisTamper(Tamper):
    client: redis.Redis
    key: str

    def _member(self, seq: int) -> str:
        members = self.client.zrange(self.key, seq, seq, byscore=True)
        assert len(members) == 1, f"no single audit record at {seq}"
        return str(members[0])

    def edit_event(self, seq: int, event: dict[str, object]) -> None:
        member = self._member(seq)
        data = json.loads(member)
        data["event"] = event
        self.client.zrem(self.key, member)
        self.client.zadd(self.key, {json.dumps(data): seq})

    def replace_record(self, record: AuditRecord) -> None:
        self.client.zrem(self.key, self._member(record.seq))
        self.client.zadd(self.key, {encode_audit(record): record.seq})

    def delete(self, seq: int) -> None:
        self.client.zremrangebyscore(self.key, seq, seq)

    def swap(self, a: int, b: int) -> None:
        ma, mb = self._member(a), self._member(b)
        self.client.zadd(self.key, {ma: b, mb: a})

    def insert_after(self, seq: int, record: AuditRecord) -> None:
        self.client.zadd(self.key, {encode_audit(record): seq + 0.5})


@dataclass
class Backend:
    """A store under test, its settings, and a way to tamper with what it wrote."""

    kind: str
    store: Store
    settings: Settings
    tamper: Tamper


def sqlite_settings(tmp_path: Path, timeout: float = 2.0) -> Settings:
    return Settings(data_dir=str(tmp_path / "var"), store=StoreSettings(backend="sqlite", timeout_seconds=timeout))


def redis_settings(url: str, namespace: str | None = None, timeout: float = 2.0) -> Settings:
    return Settings(
        store=StoreSettings(
            backend="redis", url=url, namespace=namespace or f"t-{uuid.uuid4().hex}", timeout_seconds=timeout
        )
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh store of each kind; Redis tests get a namespace no other test uses."""
    tamper: Tamper
    if request.param == "sqlite":
        settings = sqlite_settings(tmp_path)
        store = open_store(settings)
        tamper = SQLiteTamper(settings.sqlite_path)
        client = None
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        settings = redis_settings(server.url)
        store = open_store(settings)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        tamper = RedisTamper(client, f"{settings.store.namespace}:audit")
    yield Backend(request.param, store, settings, tamper)
    store.close()
    if client is not None:
        client.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


def forged(seq: int, prev_hash: str, event: dict[str, object] | None = None, at: int = 1) -> AuditRecord:
    """A record with a correct hash of its own, as an attacker who knows the scheme would make."""
    return build_record(seq, at, event or {"action": "grant", "actor": "mallory"}, prev_hash)
