"""The operator's commands for moving and keeping the store: migrate, export, import, backup, archive, verify.

Run as real ``ga4gh-broker`` processes against real SQLite, PostgreSQL and Redis stores: an export of
one backend imports into an empty store of another with every record and the same audit chain, round
SQLite -> PostgreSQL -> Redis -> SQLite.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import yaml

from broker.settings import load_settings
from broker.store import open_kernel
from broker.store.kernel import Kernel
from tests.support.postgres_server import shared_postgres
from tests.support.redis_server import RedisServer

T0 = 1_700_000_000


def cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", "-c", str(config), *args],
        capture_output=True,
        text=True,
        input=stdin,
        check=False,
        timeout=120,
    )


def write_config(path: Path, data_dir: Path, store: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"data_dir": str(data_dir), "store": store}))
    return path


def kernel_of(config: Path) -> Kernel:
    settings = load_settings(config, environ={})
    return open_kernel(settings.store, settings.sqlite_path)


def fill(kernel: Kernel) -> None:
    kernel.put("grant", "g/1", {"identity": "alice", "dataset": "EGAD1"}, terms=["identity:alice", "dataset:EGAD1"])
    kernel.put("client", "portal", {"name": "Portal ✓"})
    kernel.put("session", "s1", {"who": "alice"}, expires_at=4_000_000_000)
    for i in range(25):
        kernel.audit_append({"event": "test.record", "i": i}, T0 + i)


def records(export_text: str) -> list[dict[str, object]]:
    """The record lines of an export, in a comparable order (the header's backend and time left out)."""
    lines = [json.loads(line) for line in export_text.splitlines() if line.strip()]
    kept = [line for line in lines if line.get("type") not in ("header", "trailer")]
    return sorted(kept, key=lambda line: json.dumps(line, sort_keys=True))


def test_an_export_moves_every_record_and_the_chain_through_every_backend(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    pg = shared_postgres()
    sqlite_a = write_config(tmp_path / "a.yaml", tmp_path / "a", {"backend": "sqlite"})
    postgres = write_config(
        tmp_path / "pg.yaml",
        tmp_path / "pg",
        {"backend": "postgres", "url": pg.url, "postgres_schema": f"cli_{uuid.uuid4().hex}"},
    )
    redis = write_config(
        tmp_path / "redis.yaml",
        tmp_path / "r",
        {"backend": "redis", "url": redis_server.url, "namespace": f"cli-{uuid.uuid4().hex}"},
    )
    sqlite_b = write_config(tmp_path / "b.yaml", tmp_path / "b", {"backend": "sqlite"})
    first = kernel_of(sqlite_a)
    try:
        fill(first)
    finally:
        first.close()

    migrated = cli(postgres, "store", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert cli(postgres, "store", "migrate").stdout.startswith("schema is current")  # twice: a no-op

    exported = cli(sqlite_a, "store", "export")
    assert exported.returncode == 0, exported.stderr
    original = records(exported.stdout)
    assert any(line.get("kind") == "grant" for line in original)
    previous = exported.stdout
    for target in (postgres, redis, sqlite_b):
        dump = tmp_path / f"{target.stem}.jsonl"
        dump.write_text(previous)
        imported = cli(target, "store", "import", str(dump))
        assert imported.returncode == 0, imported.stderr
        verified = cli(target, "audit", "verify")
        assert verified.returncode == 0 and "25 audit record(s), chain intact" in verified.stdout, verified.stdout
        again = cli(target, "store", "export")
        assert again.returncode == 0, again.stderr
        assert records(again.stdout) == original, f"records changed on the way into {target.stem}"
        previous = again.stdout
    refused = cli(sqlite_b, "store", "import", str(tmp_path / "b.jsonl"))
    assert refused.returncode == 1 and "import failed" in refused.stderr  # never into a store that holds records


def test_archive_then_verify_the_archive_and_the_live_tail_as_one_chain(tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.yaml", tmp_path / "s", {"backend": "sqlite"})
    kernel = kernel_of(config)
    try:
        fill(kernel)
    finally:
        kernel.close()
    archived = cli(config, "audit", "archive", "--before", str(T0 + 10), "--to", str(tmp_path / "archive"))
    assert archived.returncode == 0 and "archived to" in archived.stdout, archived.stderr
    files = sorted((tmp_path / "archive").glob("*.jsonl.gz"))
    assert len(files) == 1
    live_only = cli(config, "audit", "verify")
    assert live_only.returncode == 1  # the live tail alone starts after a cut: a gap from genesis
    whole = cli(config, "audit", "verify", "--archive", *map(str, files))
    assert whole.returncode == 0, whole.stdout + whole.stderr


def test_backup_copies_a_live_sqlite_store(tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.yaml", tmp_path / "s", {"backend": "sqlite"})
    kernel = kernel_of(config)
    try:
        fill(kernel)
        copy = tmp_path / "copy.db"
        done = cli(config, "store", "backup", str(copy))
        assert done.returncode == 0, done.stderr
        assert copy.stat().st_mode & 0o077 == 0
        restored = write_config(tmp_path / "r.yaml", tmp_path / "r", {"backend": "sqlite", "path": str(copy)})
        verified = cli(restored, "audit", "verify")
        assert verified.returncode == 0 and "25 audit record(s)" in verified.stdout
        assert cli(config, "store", "backup", str(copy)).returncode == 2  # never overwrites
    finally:
        kernel.close()


def test_backup_while_writers_go_on_is_one_consistent_moment_and_private_from_the_start(tmp_path: Path) -> None:
    """SQLite's online backup under a writer appending audit records: the copy's chain is whole.

    The copy is created 0600 before a single page is written, so no moment exists at which
    another user could open a half-written backup.
    """
    config = write_config(tmp_path / "s.yaml", tmp_path / "s", {"backend": "sqlite"})
    kernel = kernel_of(config)
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        i = 0
        while not stop.is_set():
            kernel.put("grant", f"g/{i}", {"i": i, "pad": "x" * 2000}, terms=[f"n:{i % 7}"])
            written.append(kernel.audit_append({"event": "test.write", "i": i}, T0 + i).seq)
            i += 1

    writer = threading.Thread(target=write)
    try:
        for i in range(300):
            kernel.put("grant", f"seed/{i}", {"i": i, "pad": "y" * 4000})
        writer.start()
        while len(written) < 50:
            time.sleep(0.01)
        copy = tmp_path / "copy.db"
        done = cli(config, "store", "backup", str(copy))
        during = len(written)
    finally:
        stop.set()
        writer.join(30)
        kernel.close()
    assert done.returncode == 0, done.stderr
    assert copy.stat().st_mode & 0o777 == 0o600
    assert during < len(written), "the writer stopped during the backup: nothing was proven"
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    restored = write_config(tmp_path / "r.yaml", tmp_path / "r", {"backend": "sqlite", "path": str(copy)})
    verified = cli(restored, "audit", "verify")
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stdout + verified.stderr
    copied = kernel_of(restored)
    try:
        assert copied.audit_last_seq() >= 50
        assert copied.get("grant", "seed/299") is not None
    finally:
        copied.close()


def test_backup_refuses_other_backends_and_an_existing_path(tmp_path: Path, redis_server: RedisServer) -> None:
    redis = write_config(
        tmp_path / "redis.yaml", tmp_path / "r", {"backend": "redis", "url": redis_server.url, "namespace": "b"}
    )
    refused = cli(redis, "store", "backup", str(tmp_path / "x.db"))
    assert refused.returncode == 2 and "docs/operations.md" in refused.stderr
    assert not (tmp_path / "x.db").exists()
    config = write_config(tmp_path / "s.yaml", tmp_path / "s", {"backend": "sqlite"})
    kernel_of(config).close()
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"keep me")
    again = cli(config, "store", "backup", str(existing))
    assert again.returncode == 2 and "exists" in again.stderr
    assert existing.read_bytes() == b"keep me"


def test_store_and_audit_exports_are_written_readable_by_their_owner_only(tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.yaml", tmp_path / "s", {"backend": "sqlite"})
    kernel = kernel_of(config)
    try:
        fill(kernel)
    finally:
        kernel.close()
    for args in (("store", "export", "--out"), ("audit", "export", "--out")):
        target = tmp_path / f"{args[0]}.jsonl"
        target.write_text("old")
        target.chmod(0o644)  # an existing, world-readable file is made private too
        done = cli(config, *args, str(target))
        assert done.returncode == 0, done.stderr
        assert target.stat().st_mode & 0o777 == 0o600, args
        assert "old" not in target.read_text() and "test.record" in target.read_text()
