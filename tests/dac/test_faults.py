"""The store cut in the middle of a grant, renewal, revocation or import: whole or nothing, and retries converge.

Two ways to cut (:mod:`tests.dac.faults`):

- the kernel's fault hook raises inside the transaction, just before it commits (SQLite
  ``before_commit``, Redis ``before_exec``), on both backends: the change must not have happened;
- a TCP proxy in front of a real redis-server cuts the connection carrying the transaction's
  ``EXEC``, either before the server gets it (the change must not have happened) or after the
  server ran it, before the caller hears back (the change must have happened whole), and keeps
  the server unreachable until the test retries.

Either way the caller sees StoreUnavailable. Afterwards the state, the audit log and the
revocation event seen by a RevocationWatcher agree: the change is there whole (grant, slot,
audit record(s), and for a revocation the ``grants.revoke`` event the watcher reports) or not
at all. The caller then retries the same call: it answers what was asked, and the log holds
one record of the change (on main, a revoke cut after its grant write answered 503, left no
audit record, and its retry answered 409 and evicted nothing).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from broker.dac.grants import GrantRequest
from broker.dac.records import Grant
from broker.dac.services import DacServices
from broker.identity.records import Identity
from broker.settings import Settings
from broker.store.base import StoreUnavailable
from broker.store.kernel import Kernel
from broker.store.settings import StoreSettings
from broker.visas.revocation import RevocationWatcher
from tests.dac.conftest import DAY, ISSUER, PEOPLE, T0, Clock, SettingsWithDac, dac_config, kernel_of, services
from tests.dac.faults import CuttingProxy, Mode, fail_once
from tests.dac.interleave import PAUSE_POINTS
from tests.support.legacy_store import Store, open_store
from tests.support.redis_server import RedisServer

CHANGES = ("grant", "renew", "revoke", "import")
EVENTS = {
    "grant": ["grants.create"],
    "renew": ["grants.renew"],
    "revoke": ["grants.revoke"],
    "import": ["grants.import", "grants.create", "grants.create"],
}
CSV = "identity,dataset,end,reason\nresearcher,A-1,1760000000,one\nresearcher-2,A-2,1760000000,two\n"
SLOTS = (("researcher", "EGAD-A1", "A"), ("researcher", "A-1", "A"), ("researcher-2", "A-2", "A"))


def prepare(svc: DacServices, change: str) -> dict[str, Grant]:
    """What the change acts on: a grant to renew or revoke."""
    if change in ("renew", "revoke"):
        return {"grant": svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=T0 + 30 * DAY))}
    return {}


def run(svc: DacServices, change: str, ctx: dict[str, Grant]) -> Any:
    if change == "grant":
        return svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=T0 + 30 * DAY, reason="s"))
    if change == "renew":
        return svc.grants.renew("member-a", ctx["grant"].id, T0 + 90 * DAY, "year two")
    if change == "revoke":
        return svc.grants.revoke("member-a", ctx["grant"].id, "misuse")
    return svc.grants.import_csv("chair-a", CSV)


def state(svc: DacServices) -> tuple[object, ...]:
    """Every grant of the researchers and who holds each slot the changes touch."""
    repo = svc.repository
    grants = sorted([*repo.grants_of("researcher"), *repo.grants_of("researcher-2")], key=lambda g: g.id)
    return (grants, [repo.grant_slot_holder(*slot) for slot in SLOTS])


def events_since(store: Store, seq: int) -> list[str]:
    return [r.event["event"] for r in store.audit_records(seq)]


def assert_whole(svc: DacServices, change: str, ctx: dict[str, Grant]) -> None:
    """The change is there with everything it writes."""
    repo = svc.repository
    now = T0
    if change == "grant":
        (grant,) = repo.grants_of("researcher")
        assert grant.live(now) and repo.grant_slot_holder("researcher", "EGAD-A1", "A") == grant.id
    elif change == "renew":
        grant = repo.grant(ctx["grant"].id)  # type: ignore[assignment]
        assert grant is not None and grant.end == T0 + 90 * DAY and grant.reason == "year two"
        assert repo.grant_slot_holder("researcher", "EGAD-A1", "A") == grant.id
    elif change == "revoke":
        grant = repo.grant(ctx["grant"].id)  # type: ignore[assignment]
        assert grant is not None and grant.revoked_by == "member-a" and not grant.live(now)
        assert repo.grant_slot_holder("researcher", "EGAD-A1", "A") is None
    else:
        made = [*repo.grants_of("researcher"), *repo.grants_of("researcher-2")]
        assert sorted(g.dataset for g in made) == ["A-1", "A-2"]
        assert all(repo.grant_slot_holder(g.identity_id, g.dataset, g.dac) == g.id for g in made)


def watcher(store: Store, seen: list[str]) -> RevocationWatcher:
    w = RevocationWatcher(store, seen.append)
    w.poll()  # starts at the log's end
    return w


# ---------------------------------------------------------------------------- the kernel's fault hook


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_cut_before_its_commit_leaves_nothing_and_its_retry_makes_it_once(
    settings: Settings, store: Store, kernel: Kernel, svc: DacServices, revoked: list[str], change: str
) -> None:
    ctx = prepare(svc, change)
    before, mark, seen = state(svc), store.audit_last_seq(), []  # type: ignore[var-annotated]
    watch = watcher(store, seen)
    kernel.fault = fail_once(PAUSE_POINTS[settings.store.backend])  # type: ignore[attr-defined]

    with pytest.raises(StoreUnavailable):
        run(svc, change, ctx)
    assert state(svc) == before and events_since(store, mark) == [], "a cut change left something behind"
    assert watch.poll() == 0 and revoked == []

    run(svc, change, ctx)  # the caller retries
    assert_whole(svc, change, ctx)
    assert events_since(store, mark) == EVENTS[change]
    assert watch.poll() == (1 if change == "revoke" else 0)
    if change == "revoke":
        assert seen == [ctx["grant"].id] and revoked == [ctx["grant"].id]


# ---------------------------------------------------------------------------- a TCP cut in front of Redis


@pytest.fixture
def proxied(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[CuttingProxy, SettingsWithDac, Store]]:
    """A store reaching the session's redis-server through a CuttingProxy, and one reaching it directly."""
    proxy = CuttingProxy(redis_server.port)
    namespace = f"t-{uuid.uuid4().hex}"

    def settings_for(url: str) -> SettingsWithDac:
        return SettingsWithDac(
            issuer=ISSUER,
            data_dir=str(tmp_path / "data"),
            dac=dac_config(),
            store=StoreSettings(backend="redis", url=SecretStr(url), namespace=namespace, timeout_seconds=1.0),
        )

    direct = open_store(settings_for(redis_server.url))
    for who in PEOPLE:
        direct.put_identity(Identity(id=who, created_at=T0 - DAY))
    yield proxy, settings_for(proxy.url), direct
    direct.close()
    proxy.close()


@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("change", CHANGES)
def test_redis_connection_cut_mid_change_is_whole_or_nothing_and_the_retry_converges(
    proxied: tuple[CuttingProxy, SettingsWithDac, Store], clock: Clock, change: str, mode: Mode
) -> None:
    proxy, settings, direct = proxied
    store = open_store(settings)
    hooked: list[str] = []
    try:
        svc = services(settings, kernel_of(store), clock=clock, on_revoke=(hooked.append,))
        observer = services(settings, kernel_of(direct), clock=clock)  # reads the server directly
        ctx = prepare(svc, change)
        before, mark, seen = state(observer), direct.audit_last_seq(), []  # type: ignore[var-annotated]
        watch = watcher(direct, seen)

        proxy.arm(mode)
        with pytest.raises(StoreUnavailable):
            run(svc, change, ctx)
        assert proxy.fired.wait(5), "the proxy never saw the transaction's EXEC"
        if mode == "before":
            assert state(observer) == before and events_since(direct, mark) == []
            assert watch.poll() == 0
        else:
            assert_whole(observer, change, ctx)
            assert events_since(direct, mark) == EVENTS[change]
            assert watch.poll() == (1 if change == "revoke" else 0)
        after_cut = state(observer)

        proxy.restore()
        result = run(svc, change, ctx)  # the caller retries the same call
        assert_whole(observer, change, ctx)
        assert events_since(direct, mark) == EVENTS[change], "the retry must not log the change twice"
        if mode == "after":
            assert state(observer) == after_cut, "the retry changed what the cut change had written"
        if change == "grant":
            assert [result.id] == [g.id for g in observer.repository.grants_of("researcher")]
        if change == "revoke":
            assert hooked == [ctx["grant"].id], "the retry evicts this process's caches"
            assert watch.poll() == (1 if mode == "before" else 0) and seen == [ctx["grant"].id]
    finally:
        store.close()


@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("change", CHANGES)
def test_a_lost_exec_is_a_503_and_the_callers_retry_logs_the_change_once(
    proxied: tuple[CuttingProxy, SettingsWithDac, Store], clock: Clock, change: str, mode: Mode
) -> None:
    """Without a partition, redis-py reports the lost connection as a WatchError; the kernel never runs
    the transaction again behind the call (the block may have applied): the caller gets 503 and retries,
    and the DAC's transaction functions decide from what they read, so the retry finds the change made
    (``after``) or makes it (``before``), never twice."""
    proxy, settings, direct = proxied
    store = open_store(settings)
    try:
        svc = services(settings, kernel_of(store), clock=clock)
        observer = services(settings, kernel_of(direct), clock=clock)
        ctx = prepare(svc, change)
        mark = direct.audit_last_seq()
        proxy.arm(mode, partition=False)
        with pytest.raises(StoreUnavailable):
            run(svc, change, ctx)
        assert proxy.fired.is_set()
        run(svc, change, ctx)  # the caller's retry converges
        assert_whole(observer, change, ctx)
        assert events_since(direct, mark) == EVENTS[change]
    finally:
        store.close()
