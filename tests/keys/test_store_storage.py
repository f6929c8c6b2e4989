"""The key ring with ``keys.storage: store``: sealed records in SQLite and Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from broker.keys.errors import KeyDecryptionError, KeyRingError
from broker.keys.records import SIGNING_KEYS, KeyRecord
from broker.keys.ring import KeyRing
from broker.keys.storage import STORE_LOCK_KEY, STORE_LOCK_KIND
from broker.settings import Settings
from broker.store.records import Records
from broker.store.settings import StoreSettings
from tests.keys.conftest import SECRET, T0, make_settings
from tests.support.keys import open_ring
from tests.support.legacy_store import Store, open_store
from tests.support.redis_server import RedisServer
from tests.support.settings import replace, unchecked

AHEAD, LIFETIME = 600, 3600


def stored_keys(store: Store) -> list[KeyRecord]:
    """The key records in the store, read behind the ring's back."""
    return sorted(Records(store.kernel, SIGNING_KEYS).scan(), key=lambda k: (k.created_at, k.kid))  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "redis"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    settings = make_settings(
        tmp_path / "data",
        storage="store",
        encryption_secret=SECRET,
        publish_ahead_seconds=AHEAD,
        max_token_lifetime_seconds=LIFETIME,
        rotate_every_days=0.0,
    )
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        namespace = f"keys-{request.node.name}"
        settings = replace(settings, store=StoreSettings(backend="redis", url=server.url, namespace=namespace))
    return settings


@pytest.fixture
def store(store_settings: Settings) -> Iterator[Store]:
    opened = open_store(store_settings)
    yield opened
    opened.close()


def ring_of(settings: Settings, store: Store, **kwargs: object) -> KeyRing:
    return open_ring(settings, store, auto_maintain_seconds=None, **kwargs)  # type: ignore[arg-type]


def test_keys_live_in_the_store_sealed(store_settings: Settings, store: Store) -> None:
    ring = ring_of(store_settings, store)
    ring.maintain(T0)
    [record] = stored_keys(store)
    assert record.kid == ring.signing_key(T0).kid
    assert b"PRIVATE KEY" not in record.private
    assert not store_settings.keys_path.exists()  # nothing on disk for storage: store


def test_sqlite_file_never_holds_a_pem(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", storage="store", encryption_secret=SECRET)
    store = open_store(settings)
    try:
        ring = ring_of(settings, store)
        ring.maintain(T0)
        ring.rotate(now=T0 + 1, immediate=True)
        assert len(stored_keys(store)) == 2
    finally:
        store.close()
    assert settings.sqlite_path.exists()
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())  # db, wal, shm
    assert b"PRIVATE KEY" not in on_disk
    assert b"kty" in on_disk  # the records are there; only the private part is sealed


def test_wrong_secret_fails_clearly_and_only_signing_needs_it(store_settings: Settings, store: Store) -> None:
    ring_of(store_settings, store).maintain(T0)
    wrong = replace(store_settings, keys=replace(store_settings.keys, encryption_secret="not the secret"))
    other = ring_of(wrong, store)
    assert len(other.jwks(T0)["keys"]) == 1  # public keys are not secret
    with pytest.raises(KeyDecryptionError, match=r"keys\.encryption_secret is wrong"):
        other.signing_key(T0)
    with pytest.raises(KeyDecryptionError):
        other.sign({"sub": "x"}, typ="at+jwt", now=T0)


def test_store_storage_without_a_secret_is_refused(store_settings: Settings, store: Store) -> None:
    bare = unchecked(store_settings, keys=unchecked(store_settings.keys, encryption_secret=None))
    with pytest.raises(KeyRingError, match="encryption_secret is not set"):
        open_ring(bare, store)


def test_lifecycle_and_old_tokens_over_the_store(store_settings: Settings, store: Store) -> None:
    ring = ring_of(store_settings, store)
    ring.maintain(T0)
    old = ring.signing_key(T0).kid
    token = ring.sign({"sub": "alice", "exp": T0 + LIFETIME}, typ="at+jwt", now=T0)
    new = ring.rotate(now=T0 + 1).kid
    assert {s.kid: s.state for s in ring.states(T0 + 1)} == {old: "active", new: "next"}
    switch = T0 + 1 + AHEAD
    assert ring.signing_key(switch).kid == new
    for at in (switch, T0 + LIFETIME):
        jwk = next(k for k in ring.jwks(at)["keys"] if k["kid"] == old)
        assert jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["ES256"], options={"verify_exp": False})
    ring.maintain(switch + LIFETIME + 60)
    assert [r.kid for r in stored_keys(store)] == [new]


def test_a_second_process_sees_the_rotation(store_settings: Settings, store: Store) -> None:
    server = ring_of(store_settings, store, refresh_seconds=0.0)
    server.maintain(T0)
    second = open_store(store_settings)
    try:
        rotated = ring_of(store_settings, second).rotate(now=T0 + 5, immediate=True)
    finally:
        second.close()
    assert server.signing_key(T0 + 5).kid == rotated.kid


def test_rotation_waits_for_the_lock_record(store_settings: Settings, store: Store) -> None:
    ring = ring_of(store_settings, store)
    ring.maintain(T0)
    kernel = store.kernel  # type: ignore[attr-defined]
    assert kernel.add(STORE_LOCK_KIND, STORE_LOCK_KEY, {"holder": "test"}, expires_at=int(time.time()) + 30)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (ring.rotate(now=T0 + 1), done.set()))
    worker.start()
    time.sleep(0.3)
    assert not done.is_set()
    assert len(stored_keys(store)) == 1
    kernel.take(STORE_LOCK_KIND, STORE_LOCK_KEY)
    worker.join(timeout=10)
    assert done.is_set()
    assert len(stored_keys(store)) == 2
    assert kernel.get(STORE_LOCK_KIND, STORE_LOCK_KEY) is None  # released after the rotation
