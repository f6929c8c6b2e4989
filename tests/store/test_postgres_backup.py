"""The PostgreSQL backups docs/operations.md tells operators to take, restored for real.

- ``pg_dump --format=custom --schema=ga4gh_broker`` of a live broker store, restored with
  ``pg_restore`` into a new cluster: every record and the whole audit chain come back.
- Point-in-time recovery: a base backup (``pg_basebackup``) and archived WAL bring the store back
  to the moment before a mistake, with what was written before it and nothing after.

Real clusters made by initdb on free loopback ports (tests.support.postgres_server).
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.store.audit import verify_chain
from broker.store.postgres_kernel import DEFAULT_SCHEMA, PostgresKernel, migrate
from broker.store.transfer import export
from tests.support.postgres_server import PostgresCluster, PostgresServer, pg_binary

T0 = 1_700_000_000

pytestmark = pytest.mark.slow  # several clusters, base backups, WAL replay


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    made = PostgresCluster()
    try:
        yield made
    finally:
        made.close()


def _kernel(server: PostgresServer) -> PostgresKernel:
    return PostgresKernel(server.url, timeout=10.0)


def _records(kernel: PostgresKernel) -> list[str]:
    """Every record and audit line of an export, without its header and trailer (they name times)."""
    out = io.StringIO()
    export(kernel, out)
    return [line for line in out.getvalue().splitlines() if '"type":"header"' not in line and "trailer" not in line]


def _write(kernel: PostgresKernel, tag: str, count: int, start: int) -> None:
    for i in range(count):
        kernel.put("grant", f"{tag}/{i}", {"tag": tag, "i": i}, terms=[f"tag:{tag}"])
        kernel.audit_append({"event": "test.write", "tag": tag, "i": i}, T0 + start + i)


def test_pg_dump_of_the_broker_schema_restores_every_record_and_the_chain_into_a_new_cluster(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    source = cluster.primary("source")
    migrate(source.url)
    kernel = _kernel(source)
    try:
        _write(kernel, "before-dump", 40, 0)
        kernel.put("session", "s1", {"who": "alice"}, expires_at=4_000_000_000)
        expected = _records(kernel)
        dump = tmp_path / "broker.dump"
        done = subprocess.run(
            [pg_binary("pg_dump"), "--format=custom", f"--schema={DEFAULT_SCHEMA}", f"--file={dump}", source.url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    finally:
        kernel.close()

    target = cluster.primary("target")
    restored = subprocess.run(
        [pg_binary("pg_restore"), f"--dbname={target.url}", "--exit-on-error", str(dump)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert restored.returncode == 0, restored.stderr
    assert migrate(target.url) == []  # the dump carries the schema version: nothing to apply
    copy = _kernel(target)
    try:
        assert _records(copy) == expected
        records = list(copy.audit_records(0))
        assert len(records) == 40 and verify_chain(records) == []
        assert copy.health().ok
        copy.audit_append({"event": "after.restore"}, T0 + 100)  # the chain goes on from the restored head
        assert verify_chain(list(copy.audit_records(0))) == []
    finally:
        copy.close()


def test_point_in_time_recovery_brings_the_store_back_to_just_before_a_mistake(cluster: PostgresCluster) -> None:
    archive = cluster.root / "wal-archive"
    archive.mkdir(mode=0o700)
    if cluster.account is not None:
        os.chown(archive, *cluster.account)
    primary = PostgresServer(cluster.root, "primary", account=cluster.account).init()
    cluster.servers.append(primary)
    primary.start(
        wal_level="replica", archive_mode="on", archive_command=f"test ! -f {archive}/%f && cp %p {archive}/%f"
    )
    migrate(primary.url)
    kernel = _kernel(primary)
    try:
        _write(kernel, "before-base-backup", 20, 0)
        base = cluster.root / "restored"
        primary.base_backup(base)
        _write(kernel, "after-base-backup", 20, 100)
        expected = _records(kernel)
        time.sleep(1.0)
        [(target_time,)] = primary.execute("SELECT clock_timestamp()::text")
        time.sleep(1.0)
        # The mistake: records deleted and the log written on; recovery must stop before all of it.
        for i in range(20):
            kernel.delete("grant", f"before-base-backup/{i}")
        _write(kernel, "after-the-mistake", 5, 200)
    finally:
        kernel.close()
    [(segment,)] = primary.execute("SELECT pg_walfile_name(pg_current_wal_lsn())")
    primary.execute("SELECT pg_switch_wal()")
    deadline = time.monotonic() + 60
    while not (archive / segment).exists():
        assert time.monotonic() < deadline, f"WAL segment {segment} never archived; {primary.log()}"
        time.sleep(0.1)
    primary.stop()

    (base / "recovery.signal").touch()
    if cluster.account is not None:
        os.chown(base / "recovery.signal", *cluster.account)
    restored = PostgresServer(cluster.root, "restored", account=cluster.account)
    cluster.servers.append(restored)
    restored.start(
        restore_command=f"cp {archive}/%f %p",
        recovery_target_time=str(target_time),
        recovery_target_action="promote",
    )
    deadline = time.monotonic() + 60
    while restored.execute("SELECT pg_is_in_recovery()") != [(False,)]:
        assert time.monotonic() < deadline, f"recovery never ended; {restored.log()}"
        time.sleep(0.1)

    assert migrate(restored.url) == []
    copy = _kernel(restored)
    try:
        assert _records(copy) == expected  # everything before the target time, nothing after
        assert copy.get("grant", "before-base-backup/0") is not None  # the deletion is undone
        assert copy.find("grant", "tag:after-the-mistake") == []
        records = list(copy.audit_records(0))
        assert len(records) == 40 and verify_chain(records) == []
        assert copy.health().ok
    finally:
        copy.close()
