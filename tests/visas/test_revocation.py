"""GA-14: a revocation made in one process reaches the verified-token cache of another within ~1 s.

Two "processes" are two store clients on the same SQLite file or the same real redis-server;
process 2 holds a Verifier with a VerifiedCache that has the minted visa cached.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from broker.core.cache import VerifiedCache
from broker.core.verify import Verifier
from broker.dac.grants import GrantRequest
from broker.identity.records import Identity
from broker.store.settings import StoreSettings
from broker.trust.config import TrustConfig
from broker.trust.jwks import KeyResolver
from broker.trust.keyset import ResolvedKey
from broker.visas.minting import VisaMinter, record_of_jti, revocation_check
from broker.visas.revocation import RevocationWatcher
from tests.dac.conftest import DAY, SettingsWithDac, dac_config, kernel_of, services
from tests.support.keys import open_ring
from tests.support.legacy_store import Store, open_store
from tests.support.redis_server import RedisServer
from tests.visas.conftest import ISSUER


@pytest.fixture(params=["sqlite", "redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SettingsWithDac]:
    store_settings = StoreSettings()
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        store_settings = StoreSettings(backend="redis", url=SecretStr(server.url), namespace=f"t-{uuid.uuid4().hex}")
    yield SettingsWithDac(issuer=ISSUER, data_dir=str(tmp_path / "data"), store=store_settings, dac=dac_config())


def test_ga14_revocation_in_one_process_evicts_the_cache_of_another(shared: SettingsWithDac) -> None:
    one: Store = open_store(shared)
    two: Store = open_store(shared)
    for who in ("member-a", "researcher"):
        one.put_identity(Identity(id=who, created_at=1))
    ring = open_ring(shared, one, auto_maintain_seconds=None)
    ring.maintain()
    svc = services(shared, kernel_of(one))
    grant = svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=int(time.time()) + DAY))
    (visa,) = VisaMinter(ring, ISSUER, svc.directory, svc.grants, svc.registered).tokens("researcher")

    # Process two: a caching verifier whose revocation check reads its own store client.
    cache = VerifiedCache(1000)
    trust = TrustConfig(
        ISSUER, own_keys=lambda: {kid: ResolvedKey(kid, alg, key) for kid, (alg, key) in ring.public_keys().items()}
    )
    checker = Verifier(
        trust, KeyResolver(trust, shared.trust.fetch), shared.limits, cache=cache, revoked=revocation_check(two)
    )
    assert len(checker.verify_visas([visa]).accepted) == 1
    assert len(checker.verify_visas([visa]).accepted) == 1 and cache.stats().hits == 1

    evicted = threading.Event()

    def drop(record_id: str) -> None:
        if record_id == grant.id:
            cache.clear()  # the cache indexes exact jtis; ours are "<record id>.<random>"
            evicted.set()

    watcher = RevocationWatcher(two, drop, interval=0.2).start()
    try:
        started = time.monotonic()
        svc.grants.revoke("member-a", grant.id, "misuse")
        assert evicted.wait(2.0), "the other process never heard of the revocation"
        latency = time.monotonic() - started
        result = checker.verify_visas([visa])
        assert result.accepted == () and [str(r.reason) for r in result.rejected] == ["revoked"]
        assert latency < 1.0
        assert record_of_jti(result.rejected[0].jti or "") == grant.id
    finally:
        watcher.stop()
        one.close()
        two.close()


def test_watcher_starts_at_the_end_and_survives_a_failing_callback(tmp_path: Path) -> None:
    settings = SettingsWithDac(issuer=ISSUER, data_dir=str(tmp_path / "d"), dac=dac_config())
    store = open_store(settings)
    store.put_identity(Identity(id="researcher", created_at=1))
    svc = services(settings, kernel_of(store))
    old = svc.grants.grant("admin", GrantRequest("researcher", "EGAD-A1", end=int(time.time()) + DAY))
    svc.grants.revoke("admin", old.id, "before the watcher")
    seen: list[str] = []

    def flaky(record_id: str) -> None:
        seen.append(record_id)
        raise RuntimeError("cache unavailable")

    watcher = RevocationWatcher(store, flaky)
    assert watcher.poll() == 0  # fixes its start at the current end: history is not replayed
    new = svc.grants.grant("admin", GrantRequest("researcher", "EGAD-A1", end=int(time.time()) + DAY))
    svc.grants.revoke("admin", new.id, "after")
    assert watcher.poll() == 1 and seen == [new.id]
    assert watcher.poll() == 0
    store.close()


def test_watcher_reports_a_registered_access_record_a_new_decision_superseded(tmp_path: Path) -> None:
    settings = SettingsWithDac(issuer=ISSUER, data_dir=str(tmp_path / "d"), dac=dac_config())
    store = open_store(settings)
    store.put_identity(Identity(id="researcher", created_at=1))
    svc = services(settings, kernel_of(store))
    first = svc.registered.grant_status("admin", "researcher", reason="verified")
    seen: list[str] = []
    watcher = RevocationWatcher(store, seen.append)
    watcher.poll()
    second = svc.registered.grant_status("admin", "researcher", reason="verified again")
    assert watcher.poll() == 1 and seen == [first.id] and second.id != first.id
    store.close()
