"""Moving a store between backends (broker.store.transfer), against real SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.store.audit import verify_chain
from broker.store.base import AuditRecord, Conflict
from broker.store.kernel import Kernel, Tx
from broker.store.postgres_kernel import PostgresKernel, migrate
from broker.store.redis_kernel import RedisKernel
from broker.store.sqlite_kernel import SQLiteKernel
from broker.store.transfer import TransferError, export, import_
from tests.support.postgres_server import shared_postgres
from tests.support.redis_server import RedisServer

Opener = Callable[[], Kernel]


@pytest.fixture
def open_kernel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Kernel]]:
    """Opens a fresh, empty store of the named backend; all are closed at the end."""
    opened: list[Kernel] = []

    def make(backend: str) -> Kernel:
        kernel: Kernel
        if backend == "sqlite":
            kernel = SQLiteKernel(tmp_path / f"store-{len(opened)}.db", timeout=5.0)
        elif backend == "postgres":
            url, schema = shared_postgres().url, f"xfer_{uuid.uuid4().hex}"
            migrate(url, schema)
            kernel = PostgresKernel(url, schema=schema, timeout=5.0)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            kernel = RedisKernel(server.url, namespace=f"xfer-{uuid.uuid4().hex}", timeout=5.0)
        opened.append(kernel)
        return kernel

    yield make
    for kernel in opened:
        kernel.close()


def _contents(kernel: Kernel) -> tuple[dict[tuple[str, str], Any], list[AuditRecord]]:
    """Everything a store holds, read through the kernel: records with expiry and terms, and the audit log."""
    records = {
        (kind, item.key): (item.value, item.expires_at, kernel.terms_of(kind, item.key))
        for kind in kernel.kinds()
        for item in kernel.scan(kind)
    }
    return records, list(kernel.audit_records(0))


def _fill(kernel: Kernel) -> None:
    later = int(time.time()) + 3600
    for i in range(30):
        # Plain keys: Redis find/scan miss keys with reserved characters (see KNOWN_FAILURES in test_conformance).
        kernel.put("grant", f"g{i:03d}", {"i": i, "who": "alice" if i % 2 else "bob", "é": "✓"}, terms=[f"id-{i % 3}"])
    kernel.put("session", "s1", {"sub": "alice"}, expires_at=later, terms=["identity-alice", "client-web"])
    kernel.put("session", "s2", {"sub": "bob", "nested": {"list": [1, 2.5, None, True]}}, expires_at=later + 1)
    kernel.put("config", "only", {})
    kernel.put("session", "gone", {"sub": "eve"}, expires_at=int(time.time()) - 5, terms=["identity-eve"])
    base = 1_700_000_000
    for batch in range(4):  # a 200-record chain, written in transactions of 50

        def append(tx: Tx, first: int = batch * 50) -> None:
            for n in range(first, first + 50):
                tx.audit({"event": "gateway.decision", "n": n, "allow": n % 2 == 0}, at=base + n)

        kernel.transact(append)


def test_round_trip_sqlite_postgres_redis_sqlite_keeps_records_terms_expiries_and_the_chain(
    open_kernel: Callable[[str], Kernel],
) -> None:
    source = open_kernel("sqlite")
    _fill(source)
    original = _contents(source)
    assert len(original[0]) == 33 and len(original[1]) == 200
    assert verify_chain(original[1]) == []

    current = source
    for backend in ("postgres", "redis", "sqlite"):
        buffer = io.StringIO()
        written = export(current, buffer)
        assert (written.records, written.audit) == (33, 200)
        target = open_kernel(backend)
        read = import_(target, io.StringIO(buffer.getvalue()))
        assert (read.records, read.audit, read.skipped_expired) == (33, 200, 0), backend
        assert _contents(target) == original, f"{current.backend} -> {backend} changed the contents"
        assert [i.key for i in target.find("grant", "id-1")] == [f"g{i:03d}" for i in range(30) if i % 3 == 1]
        assert target.get("session", "gone") is None
        current = target

    final_records = list(current.audit_records(0))
    assert [r.hash for r in final_records] == [r.hash for r in original[1]]
    assert verify_chain(final_records) == []
    following = current.audit_append({"event": "after.move"}, 1_700_001_000)
    assert (following.seq, following.prev_hash) == (201, original[1][-1].hash)


def test_import_refuses_a_store_that_is_not_empty(open_kernel: Callable[[str], Kernel]) -> None:
    source = open_kernel("sqlite")
    source.put("thing", "k", {"v": 1})
    buffer = io.StringIO()
    export(source, buffer)
    for prepare in (lambda k: k.put("other", "x", {}), lambda k: k.audit_append({"event": "x"}, 1)):
        target = open_kernel("postgres")
        prepare(target)
        with pytest.raises(Conflict, match="empty store"):
            import_(target, io.StringIO(buffer.getvalue()))
        assert target.get("thing", "k") is None


def _lines(kernel: Kernel) -> list[str]:
    buffer = io.StringIO()
    export(kernel, buffer)
    return buffer.getvalue().splitlines(keepends=True)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda lines: lines[:-1], "incomplete"),
        (lambda lines: lines[:2] + lines[3:], "trailer counts"),
        (lambda lines: [lines[0], "{not json\n", *lines[1:]], "line 2: not JSON"),
        (lambda lines: [lines[0], '{"type": "record", "kind": "k"}\n', *lines[1:]], "line 2: a record line"),
        (lambda lines: [lines[0], lines[1], lines[1], *lines[2:]], "appears twice"),
        (lambda lines: lines[1:], "not a ga4gh-broker store export"),
        (lambda lines: [*lines, lines[-1]], "after the trailer"),
        (
            lambda lines: [lines[0], '{"type": "record", "kind": "k", "key": "' + "x" * 5000 + '", "value": {}}\n'],
            "refused",
        ),
    ],
)
def test_import_names_what_is_wrong_with_a_damaged_export(
    open_kernel: Callable[[str], Kernel], damage: Callable[[list[str]], list[str]], message: str
) -> None:
    source = open_kernel("sqlite")
    source.put("thing", "a", {"v": 1}, terms=["t"])
    source.put("thing", "b", {"v": 2})
    source.audit_append({"event": "x"}, 1_700_000_000)
    target = open_kernel("sqlite")
    with pytest.raises(TransferError, match=message):
        import_(target, damage(_lines(source)))


def test_a_chain_whose_start_was_archived_moves_with_its_place_in_the_chain(
    open_kernel: Callable[[str], Kernel],
) -> None:
    source = open_kernel("postgres")
    appended = [source.audit_append({"event": "e", "i": i}, 1_700_000_000 + i) for i in range(20)]
    source.audit_truncate(12)
    target = open_kernel("redis")
    import_(target, _lines(source))
    moved = list(target.audit_records(0))
    assert [r.seq for r in moved] == list(range(13, 21))
    assert verify_chain(moved, start=(12, appended[11].hash)) == []
    assert json.loads(_lines(target)[-1]) == {"type": "end", "records": 0, "audit": 8}


def test_import_adds_in_batches_and_refuses_a_key_repeated_in_a_later_batch(
    open_kernel: Callable[[str], Kernel],
) -> None:
    source = open_kernel("sqlite")

    def fill(tx: Tx) -> None:
        for i in range(450):
            tx.put("thing", f"k{i:04d}", {"i": i}, terms=["all"])

    source.transact(fill)
    lines = _lines(source)
    target = open_kernel("postgres")
    assert import_(target, lines).records == 450
    assert len(target.find("thing", "all")) == 450
    again = open_kernel("postgres")
    with pytest.raises(TransferError, match="appears twice"):
        import_(again, [*lines[:-1], lines[1], lines[-1]])  # record 1 again, three batches later
