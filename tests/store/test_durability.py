"""DESIGN rule 7: a write acknowledged to the caller survives a crash (SIGKILL) of the writer or of Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from broker.dac.records import Grant
from broker.store.audit import verify_chain
from tests.store.conftest import redis_settings, sqlite_settings
from tests.support.legacy_store import open_store
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
GRANT = Grant(
    id="g-durable",
    identity_id="id-1",
    dataset="EGAD1",
    dac="dac-a",
    granted_by="alice",
    granted_at=1,
    start=1,
    end=4_000_000_000,
    reason="approved",
)

CHILD = """
import sys, time
from tests.support.legacy_store import LegacyStore
from broker.store.sqlite_kernel import SQLiteKernel
from broker.dac.records import Grant
store = LegacyStore(SQLiteKernel(sys.argv[1]))
store.put_grant(Grant(id="g-durable", identity_id="id-1", dataset="EGAD1", dac="dac-a", granted_by="alice",
                      granted_at=1, start=1, end=4_000_000_000, reason="approved"))
store.audit_append({"action": "grant", "grant": "g-durable"}, at=1)
print("ACK", flush=True)
time.sleep(60)  # never closes: only SIGKILL ends it
"""


@pytest.mark.slow
def test_sqlite_write_acknowledged_by_a_process_survives_its_sigkill(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path)
    settings.sqlite_path.parent.mkdir(parents=True)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(settings.sqlite_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        child.send_signal(signal.SIGKILL)  # right after the acknowledgement
        assert line.strip() == "ACK", child.stderr.read() if child.stderr else ""
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    store = open_store(settings)
    try:
        assert store.get_grant("g-durable") == GRANT
        records = list(store.audit_records())
        assert [r.event for r in records] == [{"action": "grant", "grant": "g-durable"}]
        assert verify_chain(records) == []
    finally:
        store.close()


@pytest.mark.slow
def test_redis_write_acknowledged_survives_sigkill_of_redis_with_aof_always(tmp_path: Path) -> None:
    server = RedisServer(directory=tmp_path / "redis", appendonly=True).start()  # appendfsync always
    settings = redis_settings(server.url)
    store = open_store(settings)
    try:
        store.put_grant(GRANT)
        record = store.audit_append({"action": "grant", "grant": "g-durable"}, at=1)
        store.revoke_token_id("jti-revoked", 4_000_000_000)
        server.kill()
        assert server.process is not None and server.process.returncode == -signal.SIGKILL
        server.start()  # same port and directory
        assert store.get_grant("g-durable") == GRANT
        assert list(store.audit_records()) == [record]
        assert store.is_token_revoked("jti-revoked") is True
        assert store.audit_append({"action": "next"}, at=2).prev_hash == record.hash
        assert verify_chain(store.audit_records()) == []
    finally:
        store.close()
        server.stop()


def test_durability_settings_are_in_force_on_sqlite(tmp_path: Path) -> None:
    """The pragmas rule 7 rests on, read back from a connection the store uses."""
    store = open_store(sqlite_settings(tmp_path))
    try:
        with store._connection() as conn:  # type: ignore[attr-defined]
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        mode = os.stat(store.path).st_mode & 0o777  # type: ignore[attr-defined]
        assert mode == 0o600
    finally:
        store.close()
