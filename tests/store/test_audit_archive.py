"""Audit retention (broker.store.transfer.archive / verify_archive) on every backend, and what a record costs.

The storage figures print with ``-s``:

    .venv/bin/python -m pytest -q -s tests/store/test_audit_archive.py -k bytes_per_record
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from broker.store.audit import canonical_json
from broker.store.kernel import Kernel, Tx
from broker.store.postgres_kernel import PostgresKernel, migrate
from broker.store.redis_kernel import RedisKernel
from broker.store.sqlite_kernel import SQLiteKernel
from broker.store.transfer import ARCHIVE_NAME, archive, verify_archive
from tests.support.postgres_server import shared_postgres
from tests.support.redis_server import RedisServer

T0 = 1_700_000_000


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def kernel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kernel]:
    opened: Kernel
    if request.param == "sqlite":
        opened = SQLiteKernel(tmp_path / "store.db", timeout=5.0)
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        opened = RedisKernel(server.url, namespace=f"arch-{uuid.uuid4().hex}", timeout=5.0)
    else:
        url, schema = shared_postgres().url, f"arch_{uuid.uuid4().hex}"
        migrate(url, schema)
        opened = PostgresKernel(url, schema=schema, timeout=5.0)
    yield opened
    opened.close()


def _audit_all(events: list[tuple[dict[str, Any], int]]) -> Callable[[Tx], None]:
    """A transaction that appends these (event, at) pairs."""

    def run(tx: Tx) -> None:
        for event, at in events:
            tx.audit(event, at=at)

    return run


def _append(kernel: Kernel, count: int, first_at: int) -> None:
    """``count`` records, one a second from ``first_at``, in transactions of 50."""
    for start in range(0, count, 50):
        batch = [({"event": "gateway.decision", "i": i}, first_at + i) for i in range(start, min(count, start + 50))]
        kernel.transact(_audit_all(batch))


def test_archiving_half_a_chain_leaves_one_verifiable_chain(kernel: Kernel, tmp_path: Path) -> None:
    _append(kernel, 200, T0)
    folder = tmp_path / "archive"
    first = archive(kernel, T0 + 100, folder)
    assert first is not None
    assert [r.seq for r in kernel.audit_records(0)] == list(range(101, 201))
    assert kernel.audit_last_seq() == 200
    named = ARCHIVE_NAME.fullmatch(first.name)
    assert named is not None and (int(named.group(1)), int(named.group(2))) == (1, 100)
    assert oct(first.stat().st_mode & 0o777) == "0o600"
    assert verify_archive([first], kernel.audit_records(0)) == []

    _append(kernel, 10, T0 + 200)  # appends continue the chain after archiving
    second = archive(kernel, T0 + 150, folder)
    assert second is not None
    assert archive(kernel, T0 + 150, folder) is None  # nothing older left
    assert [r.seq for r in kernel.audit_records(0)][:1] == [151]
    assert verify_archive([second, first], kernel.audit_records(0)) == []
    # Without the first file, the chain is checked from the record it says it continues.
    assert [p.problem for p in verify_archive([second], kernel.audit_records(0))] == ["gap", "chain_broken"]
    assert verify_archive([second], kernel.audit_records(0), start=(100, named.group(3))) == []


def test_the_newest_record_is_never_archived(kernel: Kernel, tmp_path: Path) -> None:
    _append(kernel, 5, T0)
    path = archive(kernel, T0 + 1000, tmp_path)
    assert path is not None and ARCHIVE_NAME.fullmatch(path.name) is not None
    assert [r.seq for r in kernel.audit_records(0)] == [5]
    following = kernel.audit_append({"event": "next"}, T0 + 2000)
    assert following.seq == 6
    assert verify_archive([path], kernel.audit_records(0)) == []


def _rewrite(path: Path, change: Callable[[list[dict[str, object]]], None]) -> None:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        entries = [json.loads(line) for line in handle]
    change(entries)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(e) + "\n" for e in entries)


def test_verify_names_a_tampered_archived_record_and_its_file(kernel: Kernel, tmp_path: Path) -> None:
    _append(kernel, 60, T0)
    path = archive(kernel, T0 + 30, tmp_path)
    assert path is not None

    def edit(entries: list[dict[str, object]]) -> None:
        record = entries[17]  # the header is line 0: this is seq 17
        assert record["seq"] == 17
        record["event"] = {"event": "gateway.decision", "i": 999}

    _rewrite(path, edit)
    problems = verify_archive([path], kernel.audit_records(0))
    assert [(p.seq, p.problem) for p in problems] == [(17, "hash_mismatch")]
    assert path.name in problems[0].detail


def test_verify_reports_a_cut_short_or_unreadable_archive(kernel: Kernel, tmp_path: Path) -> None:
    _append(kernel, 40, T0)
    path = archive(kernel, T0 + 20, tmp_path)
    assert path is not None
    _rewrite(path, lambda entries: entries.__delitem__(-1))  # the trailer
    problems = verify_archive([path], kernel.audit_records(0))
    assert [p.problem for p in problems] == ["archive_invalid"] and "no trailer" in problems[0].detail
    junk = tmp_path / "audit-000000000001-000000000002-junk.jsonl.gz"
    junk.write_bytes(b"not gzip")
    assert "archive_invalid" in [p.problem for p in verify_archive([junk], [])]


def _decision(i: int) -> dict[str, object]:
    """An audit event the size of a gateway decision (~1 KB of canonical JSON), different each time."""
    tag = uuid.uuid4().hex
    event: dict[str, object] = {
        "event": "gateway.decision",
        "decision": "allow" if i % 3 else "deny",
        "reason": "ControlledAccessGrants visa for the dataset from a trusted issuer",
        "sub": f"https://idp.example.org/users/{tag}",
        "client_id": f"client-{tag[:12]}",
        "dataset": "EGAD00001000742",
        "object": f"EGAF{i:011d}/sample-{i % 997:04d}.bam",
        "range": {"reference": "chr20", "start": 1_000_000 + i, "end": 2_000_000 + i},
        "visas": [f"https://visas.example.org/jti/{uuid.uuid4().hex}" for _ in range(4)],
        "request_id": str(uuid.uuid4()),
        "remote_addr": "203.0.113.7",
        "user_agent": "htsget-client/0.2.6 python-requests/2.32",
        "bytes": 123_456_789 + i,
    }
    event["pad"] = "x" * max(0, 1000 - len(canonical_json(event)) - 10)
    return event


def _storage_bytes(kernel: Kernel, request: pytest.FixtureRequest) -> dict[str, int]:
    """Bytes the audit log occupies now, measured the way each backend keeps it."""
    if isinstance(kernel, SQLiteKernel):
        with sqlite3.connect(kernel.path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"database file": os.path.getsize(kernel.path)}
    if isinstance(kernel, RedisKernel):
        server: RedisServer = request.getfixturevalue("redis_server")
        client = redis.Redis.from_url(server.url)
        try:
            memory = int(client.memory_usage(f"{kernel.namespace}:audit", samples=0) or 0)
        finally:
            client.close()
        aof = sum(f.stat().st_size for f in server.directory.rglob("*.aof*") if f.is_file())
        return {"memory (MEMORY USAGE)": memory, "AOF on disk": aof}
    assert isinstance(kernel, PostgresKernel)
    with psycopg.connect(shared_postgres().url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size(format('%%I.audit', %s::text)::regclass)", (kernel.schema,)
        ).fetchone()
    assert row is not None
    return {"relation": int(row[0])}


def test_bytes_per_record_for_gateway_decisions(kernel: Kernel, request: pytest.FixtureRequest) -> None:
    """Storage per ~1 KB audit record, printed per million records; bounded so a bloated layout fails."""
    count = 2000
    events = [_decision(i) for i in range(count)]
    event_bytes = sum(len(canonical_json(e)) for e in events) / count
    before = _storage_bytes(kernel, request)
    for start in range(0, count, 100):
        kernel.transact(_audit_all([(events[i], T0 + i) for i in range(start, start + 100)]))
    after = _storage_bytes(kernel, request)
    for what, size in after.items():
        per_record = (size - before[what]) / count
        print(
            f"\naudit storage [{kernel.backend} {what}]: {per_record:.0f} bytes/record for {event_bytes:.0f}-byte "
            f"events = {per_record * 1e6 / 2**30:.2f} GiB per million records"
        )
        assert event_bytes < per_record < 3 * event_bytes
