"""File storage: 0600 files in a 0700 directory, atomic writes, unsafe files refused."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.keys.errors import KeyRingError, KeyStorageError
from broker.keys.storage import FileKeyStorage
from tests.keys.conftest import T0, file_ring, make_settings


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 000: any mode we end up with is one we set ourselves."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_files_are_0600_in_a_0700_directory(tmp_path: Path, permissive_umask: None) -> None:
    settings = make_settings(tmp_path / "data")
    ring = file_ring(settings)
    ring.maintain(T0)
    ring.rotate(now=T0 + 1)
    keys = settings.keys_path
    assert mode(keys) == 0o700
    files = sorted(keys.glob("*.json"))
    assert len(files) == 2
    assert all(mode(f) == 0o600 for f in files)
    assert mode(keys / ".lock") == 0o600
    assert sorted(p.name for p in keys.iterdir()) == sorted([".lock", *(f.name for f in files)])  # no temp files


def test_key_file_holds_the_private_key_as_pem(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    ring = file_ring(settings)
    ring.maintain(T0)
    kid = ring.signing_key(T0).kid
    data = json.loads((settings.keys_path / f"{kid}.json").read_text())
    assert data["kid"] == kid
    assert data["private_key_pem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert data["created_at"] == data["not_before"] == T0


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    ring = file_ring(settings)
    ring.maintain(T0)
    path = next(settings.keys_path.glob("*.json"))
    path.chmod(0o644)
    with pytest.raises(KeyStorageError, match=r"readable by group or others.*rotate with --immediate"):
        file_ring(settings).signing_key(T0)


def test_a_group_writable_key_directory_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    file_ring(settings).maintain(T0)
    settings.keys_path.chmod(0o770)
    with pytest.raises(KeyStorageError, match="writable by group or others"):
        file_ring(settings).signing_key(T0)


def test_a_file_holding_another_kid_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    file_ring(settings).maintain(T0)
    path = next(settings.keys_path.glob("*.json"))
    path.rename(settings.keys_path / f"{'B' * 43}.json")
    with pytest.raises(KeyStorageError, match="not the kid its name says"):
        file_ring(settings).signing_key(T0)


@pytest.mark.parametrize("body", ["{", "[]", '{"format": 1}', '{"format": 2}'])
def test_a_malformed_key_file_is_refused(tmp_path: Path, body: str) -> None:
    settings = make_settings(tmp_path / "data")
    file_ring(settings).maintain(T0)
    path = next(settings.keys_path.glob("*.json"))
    path.write_text(body)
    with pytest.raises(KeyStorageError, match=r"unreadable|malformed"):
        file_ring(settings).signing_key(T0)


def test_other_files_in_the_directory_are_ignored_and_temp_files_tidied(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    ring = file_ring(settings)
    ring.maintain(T0)
    keys = settings.keys_path
    (keys / "README").write_text("not a key")
    stale = keys / ".tmp-crashed.json"
    stale.write_text("{")
    assert len(file_ring(settings).states(T0)) == 1
    ring.rotate(now=T0 + 1, immediate=True)  # takes the lock, so it may tidy
    assert not stale.exists()
    assert (keys / "README").exists()


@pytest.mark.parametrize("kid", ["../../etc/passwd", "a" * 42, "a" * 44, "a/" * 21 + "a", ""])
def test_only_thumbprint_shaped_kids_touch_the_directory(tmp_path: Path, kid: str) -> None:
    storage = FileKeyStorage(tmp_path / "keys")
    with pytest.raises(KeyRingError, match="not a key id"):
        storage.delete(kid)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path / "data")
    ring = file_ring(settings)
    ring.maintain(T0)
    before = sorted(p.name for p in settings.keys_path.iterdir())

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="No space"):
        ring.rotate(now=T0 + 1)
    monkeypatch.undo()
    assert sorted(p.name for p in settings.keys_path.iterdir()) == before
    assert len(file_ring(settings).states(T0 + 1)) == 1
