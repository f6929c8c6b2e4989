"""The operator's commands for moving and keeping the store: migrate, export, import, backup, archive, verify.

Run as real ``ga4gh-broker`` processes against real SQLite, PostgreSQL and Redis stores: an export of
one backend imports into an empty store of another with every record and the same audit chain, round
SQLite -> PostgreSQL -> Redis -> SQLite.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
