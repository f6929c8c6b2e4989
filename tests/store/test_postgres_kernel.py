"""What only the PostgreSQL kernel does: migrations, health, LISTEN/NOTIFY fan-out, stalls and settings.

The contract every backend keeps is in test_conformance.py; these run against real clusters
started by tests.support.postgres_server.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from broker.settings_model import SettingsProblem
from broker.store.audit import verify_chain
from broker.store.base import StoreError, StoreUnavailable
from broker.store.kernel import Tx
from broker.store.postgres_kernel import (
    Migration,
    PostgresKernel,
    latest_version,
    migrate,
    open_postgres,
    shipped_migrations,
)
from broker.store.settings import StoreSettings, check_store
from tests.support.parts import free_port
from tests.support.postgres_server import PostgresCluster, PostgresServer, shared_postgres


@pytest.fixture
def server() -> PostgresServer:
    return shared_postgres()


@pytest.fixture
def schema() -> str:
    return f"pgk_{uuid.uuid4().hex}"


@pytest.fixture
def kernel(server: PostgresServer, schema: str) -> Iterator[PostgresKernel]:
    migrate(server.url, schema)
    opened = PostgresKernel(server.url, schema=schema, timeout=3.0)
    yield opened
    opened.close()


def _versions(server: PostgresServer, schema: str) -> list[int]:
    rows = server.execute(f"SELECT version FROM {schema}.schema_migrations ORDER BY version")  # noqa: S608 - test schema
    return [int(r[0]) for r in rows]


# ---------------------------------------------------------------------- migrations


def test_migrate_applies_the_shipped_files_once_and_is_a_no_op_the_second_time(
    server: PostgresServer, schema: str
) -> None:
    assert [m.version for m in shipped_migrations()] == list(range(1, latest_version() + 1))
    assert migrate(server.url, schema) == list(range(1, latest_version() + 1))
    assert migrate(server.url, schema) == []
    assert _versions(server, schema) == list(range(1, latest_version() + 1))
    PostgresKernel(server.url, schema=schema).close()


def test_opening_a_missing_schema_is_refused_in_one_line_naming_the_migrate_command(
    server: PostgresServer, schema: str
) -> None:
    with pytest.raises(StoreError) as refused:
        PostgresKernel(server.url, schema=schema)
    message = str(refused.value)
    assert "`ga4gh-broker store migrate`" in message and "\n" not in message
    assert not isinstance(refused.value, StoreUnavailable)


def test_a_newer_schema_is_refused_by_the_kernel_and_never_downgraded_by_migrate(
    server: PostgresServer, schema: str
) -> None:
    migrate(server.url, schema)
    server.execute(f"INSERT INTO {schema}.schema_migrations VALUES (99, 'future', 'x')")  # noqa: S608 - test schema
    with pytest.raises(StoreError) as refused:
        PostgresKernel(server.url, schema=schema)
    message = str(refused.value)
    assert "version 99" in message and "`ga4gh-broker store migrate`" in message and "\n" not in message
    with pytest.raises(StoreError, match="newer than this broker"):
        migrate(server.url, schema)


def test_a_schema_behind_the_broker_is_refused_until_migrated(server: PostgresServer, schema: str) -> None:
    assert migrate(server.url, schema, migrations=[]) == []  # schema and bookkeeping, no tables yet
    with pytest.raises(StoreError, match=r"version 0, this broker needs .*`ga4gh-broker store migrate`"):
        PostgresKernel(server.url, schema=schema)
    migrate(server.url, schema)
    PostgresKernel(server.url, schema=schema).close()


def test_migrations_run_in_order_each_in_one_transaction(server: PostgresServer, schema: str) -> None:
    first = Migration(1, "a", "CREATE TABLE a (n int); INSERT INTO a VALUES (1);")
    second = Migration(2, "b", "INSERT INTO a SELECT n + 1 FROM a;")
    broken = Migration(3, "c", "CREATE TABLE c (n int); INSERT INTO a VALUES ('not a number');")
    with pytest.raises(StoreError):
        migrate(server.url, schema, migrations=[broken, second, first])  # given out of order
    assert _versions(server, schema) == [1, 2]
    assert server.execute(f"SELECT n FROM {schema}.a ORDER BY n") == [(1,), (2,)]  # noqa: S608 - test schema
    assert server.execute(f"SELECT to_regclass('{schema}.c')") == [(None,)]  # file 3 left nothing
    fixed = Migration(3, "c", "CREATE TABLE c (n int);")
    assert migrate(server.url, schema, migrations=[first, second, fixed]) == [3]
    changed = Migration(2, "b", "INSERT INTO a VALUES (7);")
    with pytest.raises(StoreError, match="must never change"):
        migrate(server.url, schema, migrations=[first, changed, fixed])


# ---------------------------------------------------------------------- health


def test_health_is_ready_on_the_primary_and_warns_when_synchronous_commit_is_off(
    server: PostgresServer, schema: str
) -> None:
    migrate(server.url, schema)
    kernel = PostgresKernel(server.url, schema=schema, pool_min=1, pool_max=1)
    try:
        health = kernel.health()
        assert (health.ok, health.backend, health.warnings) == (True, "postgres", [])
        # A session whose setting was lost (what a transaction pooler does): the one pooled connection.
        with kernel._session() as conn:  # simulating a broken session on purpose
            conn.execute("SET synchronous_commit TO off")
        health = kernel.health()
        assert health.ok and any("synchronous_commit is off" in w for w in health.warnings)
    finally:
        kernel.close()


def test_health_refuses_a_read_only_server(server: PostgresServer) -> None:
    database = f"ro_{uuid.uuid4().hex}"
    server.execute(f"CREATE DATABASE {database}")
    url = server.url.rsplit("/", 1)[0] + f"/{database}"
    migrate(url)
    server.execute(f"ALTER DATABASE {database} SET default_transaction_read_only = on")
    kernel = PostgresKernel(url)
    try:
        health = kernel.health()
        assert not health.ok and any("read-only" in w for w in health.warnings)
        with pytest.raises(StoreUnavailable, match="read-only"):
            kernel.put("thing", "k", {})
    finally:
        kernel.close()


# ---------------------------------------------------------------------- LISTEN/NOTIFY


def _append_in_another_process(url: str, schema: str, ready: Any, done: Any) -> None:
    kernel = PostgresKernel(url, schema=schema)
    try:
        ready.wait(30)
        started = time.time()
        record = kernel.audit_append({"event": "grants.revoke", "grant": "g1"}, int(time.time()))
        done.put((record.seq, started))
    finally:
        kernel.close()


def test_another_processs_append_reaches_the_listener_within_a_second(
    kernel: PostgresKernel, server: PostgresServer, schema: str
) -> None:
    heard: dict[int, float] = {}
    event = threading.Event()

    def on_seq(seq: int) -> None:
        heard[seq] = time.time()
        event.set()

    kernel.audit_append({"event": "before"}, int(time.time()))  # not reported: the listener starts after it
    listener = kernel.listen_audit(on_seq)
    try:
        assert listener.listening.wait(10)
        ctx = multiprocessing.get_context("spawn")
        ready, done = ctx.Event(), ctx.Queue()
        process = ctx.Process(target=_append_in_another_process, args=(server.url, schema, ready, done))
        process.start()
        ready.set()
        seq, append_started = done.get(timeout=30)
        process.join(30)
        assert process.exitcode == 0
        assert event.wait(5), "the listener never heard the other process's append"
        latency = heard[seq] - append_started
        print(f"\nLISTEN/NOTIFY: from another process calling audit_append to the listener: {latency * 1000:.1f} ms")
        assert seq == 2 and list(heard) == [2]
        assert latency < 1.0
    finally:
        listener.close()
    assert not listener.running


def test_the_listener_reconnects_and_reports_what_was_committed_meanwhile(
    kernel: PostgresKernel, server: PostgresServer
) -> None:
    seen: list[int] = []
    cond = threading.Condition()

    def on_seq(seq: int) -> None:
        with cond:
            seen.append(seq)
            cond.notify_all()

    with kernel.listen_audit(on_seq) as listener:
        assert listener.listening.wait(10)
        kernel.audit_append({"event": "one"}, 1)
        # Cut the listener's session (as a server restart or a failover would), then append at once.
        cut = server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 - our own schema name
            f"WHERE application_name = 'broker-audit {kernel.schema}'"
        )
        assert cut == [(True,)]
        for i in range(5):
            kernel.audit_append({"event": "while.away", "i": i}, 2)
        with cond:
            assert cond.wait_for(lambda: len(seen) >= 6, timeout=10), f"only {seen}"
        time.sleep(0.3)
        assert seen == [1, 2, 3, 4, 5, 6]


# ---------------------------------------------------------------------- failures


def test_an_unreachable_server_gives_store_unavailable_within_the_timeout() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="no connection within"):
        PostgresKernel(url, timeout=1.0)
    assert time.monotonic() - started < 2.0


def test_a_stalled_server_gives_store_unavailable_at_the_deadline_and_a_take_is_never_doubled() -> None:
    cluster = PostgresCluster()
    try:
        server = cluster.primary("stalled")
        migrate(server.url)
        kernel = PostgresKernel(server.url, timeout=1.0)
        try:
            kernel.put("code", "c1", {"v": 1})
            server.pause()
            try:
                for call in (lambda: kernel.take("code", "c1"), lambda: kernel.get("code", "c1")):
                    started = time.monotonic()
                    with pytest.raises(StoreUnavailable):
                        call()
                    assert time.monotonic() - started < 1.5
            finally:
                server.resume()
            # The take whose answer never came was not committed (its session ended without COMMIT),
            # and is not re-sent: the code is handed out exactly once, now.
            deadline = time.monotonic() + 10
            while True:
                try:
                    got = [kernel.take("code", "c1"), kernel.take("code", "c1")]
                    break
                except StoreUnavailable:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            assert got == [{"v": 1}, None]
        finally:
            kernel.close()
    finally:
        cluster.close()


def test_a_pooled_connection_whose_server_went_away_is_replaced_not_failed(
    kernel: PostgresKernel, server: PostgresServer
) -> None:
    kernel.put("thing", "k", {"v": 1})
    with kernel._session() as conn:  # age the pooled connection past the idle check
        conn.last_used = 0.0
        pid = conn.info.backend_pid
    server.execute(f"SELECT pg_terminate_backend({pid})")
    assert kernel.get("thing", "k") == {"v": 1}


def test_names_hold_any_character_including_nul(kernel: PostgresKernel) -> None:
    kernel.put("thing\x00a", "key\x00\n", {"v": "\x00"}, terms=["t\x00"])
    assert kernel.get("thing\x00a", "key\x00\n") == {"v": "\x00"}
    assert [i.key for i in kernel.find("thing\x00a", "t\x00")] == ["key\x00\n"]
    assert kernel.get("thing", "key\x00\n") is None


# ---------------------------------------------------------------------- settings


def test_store_settings_describe_a_postgres_kernel(server: PostgresServer, schema: str) -> None:
    settings = StoreSettings.model_validate(
        {"backend": "postgres", "url": server.url, "postgres_schema": schema, "pool_min": 0, "pool_max": 3}
        | {"timeout_seconds": 1.5}
    )
    check_store(settings)
    migrate(server.url, schema)
    kernel = open_postgres(settings)
    try:
        assert (kernel.schema, kernel.timeout) == (schema, 1.5)
        kernel.put("thing", "k", {"v": 1})
        assert kernel.get("thing", "k") == {"v": 1}
    finally:
        kernel.close()
    with pytest.raises(SettingsProblem, match=r"store\.url"):
        check_store(StoreSettings.model_validate({"backend": "postgres", "url": "redis://127.0.0.1/0"}))
    with pytest.raises(SettingsProblem, match=r"store\.pool_min"):
        check_store(
            StoreSettings.model_validate({"backend": "postgres", "url": server.url, "pool_min": 5, "pool_max": 2})
        )
    with pytest.raises(ValueError):
        StoreSettings.model_validate({"backend": "postgres", "postgres_schema": "Robert'); DROP TABLE students;--"})
    with pytest.raises(ValueError):
        PostgresKernel(server.url, schema="bad-name")


def test_psycopg_errors_never_escape(kernel: PostgresKernel) -> None:
    """A value PostgreSQL cannot hold is a StoreError (never a psycopg exception)."""
    with pytest.raises(StoreError):
        kernel.incr("limit", "k", expires_at=2**63)
    with pytest.raises(StoreError):
        kernel.audit_append({"event": "x"}, 2**63)


def test_concurrent_appends_of_one_process_share_commits_and_each_caller_gets_its_own_record(
    kernel: PostgresKernel,
) -> None:
    def append(i: int) -> tuple[int, Any]:
        if i % 10 == 9:
            with pytest.raises(ValueError):
                kernel.audit_append({"bad": float("nan")}, 1)  # fails only its caller
        return i, kernel.audit_append({"event": "t", "i": i}, 1_700_000_000 + i)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(append, range(80)))
    assert all(record.event == {"event": "t", "i": i} for i, record in results)
    assert sorted(record.seq for _, record in results) == list(range(1, 81))
    stored = list(kernel.audit_records(0))
    assert verify_chain(stored) == []
    assert {r.seq: r for r in stored} == {record.seq: record for _, record in results}


def test_expired_rows_are_deleted_by_a_background_purge_started_by_writes(
    kernel: PostgresKernel, server: PostgresServer, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    past = int(time.time()) - 10
    for start in range(0, 2500, 500):  # more than two purge batches

        def fill(tx: Tx, start: int = start) -> None:
            for i in range(start, start + 500):
                tx.put("ticket", f"t{i}", {}, expires_at=past, terms=["x"])

        kernel.transact(fill)
    kernel.incr("limit", "ip", expires_at=past)
    kernel.put("ticket", "live", {}, terms=["x"])

    def count(table: str) -> int:
        return int(server.execute(f"SELECT count(*) FROM {schema}.{table}")[0][0])  # noqa: S608 - test schema

    assert count("records") == 2501 and count("record_terms") == 2501 and count("counters") == 1
    monkeypatch.setattr("broker.store.postgres_kernel.PURGE_INTERVAL", 0.0)
    kernel._next_purge = 0.0  # due now
    kernel.put("ticket", "trigger", {})
    deadline = time.monotonic() + 10
    while count("records") != 2:
        assert time.monotonic() < deadline, f"{count('records')} rows left"
        time.sleep(0.05)
    assert count("record_terms") == 1 and count("counters") == 0
    assert [i.key for i in kernel.find("ticket", "x")] == ["live"]
