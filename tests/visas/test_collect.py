"""collect_visas: minted + remote + upstream, deduplicated, bounded, problems as data."""

from __future__ import annotations

import json
from pathlib import Path

from broker.core.verify import Verifier
from broker.dac.grants import GrantRequest
from broker.dac.services import DacServices
from broker.identity.service import IdentityService
from broker.keys.ring import KeyRing
from broker.settings import Settings
from broker.visas.collect import collect_visas
from broker.visas.minting import VisaMinter
from broker.visas.remote import RemoteVisaSources
from tests.dac.conftest import DAY, Clock
from tests.support.jwks_server import JwksServer, Route, TestKey
from tests.support.keys import open_ring
from tests.support.legacy_store import Store
from tests.support.parts import free_port
from tests.support.settings import replace
from tests.visas.conftest import ISSUER, remote_visa
from tests.visas.test_remote import PATH, _source


def test_collects_every_kind_in_order(
    ring: KeyRing,
    svc: DacServices,
    clock: Clock,
    store: Store,
    verifier: Verifier,
    sources_server: JwksServer,
    issuer_server: JwksServer,
    remote_key: TestKey,
) -> None:
    svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=int(clock()) + DAY))
    relayed = remote_visa(remote_key, issuer_server.url())
    sources_server.serve(
        PATH,
        Route(body=json.dumps({"ga4gh_passport_v1": [relayed]}).encode(), headers={"Content-Type": "application/json"}),
    )
    down = _source(f"https://127.0.0.1:{free_port()}", "down", timeout_seconds=0.5)
    remote = RemoteVisaSources([_source(sources_server.base_url), down], verifier, session=sources_server.session())
    minter = VisaMinter(ring, ISSUER, svc.directory, svc.grants, svc.registered, clock=clock)
    upstream = remote_visa(remote_key, issuer_server.url(), sub="upstream-sub")
    visas, problems = collect_visas(
        "researcher",
        identities=IdentityService(store.kernel),
        minter=minter,
        remote=remote,
        upstream=lambda who: [upstream, relayed] if who == "researcher" else [],
    )
    assert len(visas) == 3 and visas[1:] == [relayed, upstream]  # minted first; the duplicate passed on once
    assert verifier.verify_visas(visas[:1]).accepted[0].visa.source == "https://dac.example/dacs/A"
    assert [(p.where, p.reason) for p in problems] == [("down", "unreachable")]
    remote.close()


def test_limit_drops_extra_visas_and_says_so(ring: KeyRing, svc: DacServices, clock: Clock, store: Store) -> None:
    svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=int(clock()) + DAY))
    svc.grants.grant("admin", GrantRequest("researcher", "EGAD-B1", end=int(clock()) + DAY))
    minter = VisaMinter(ring, ISSUER, svc.directory, svc.grants, svc.registered, clock=clock)
    visas, problems = collect_visas(
        "researcher", identities=IdentityService(store.kernel), minter=minter, upstream=["u1"], limit=2
    )
    assert len(visas) == 2 and "u1" not in visas
    assert [p.reason for p in problems] == ["too_many_visas"]


def test_a_failing_minter_is_a_problem_not_a_crash(
    svc: DacServices, clock: Clock, store: Store, settings: Settings, tmp_path: Path
) -> None:
    fresh = replace(settings, keys=replace(settings.keys, directory=str(tmp_path / "nokeys")))
    keyless = open_ring(fresh, store, auto_maintain_seconds=None)  # a broker before its first start: no key
    svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=int(clock()) + DAY))
    minter = VisaMinter(keyless, ISSUER, svc.directory, svc.grants, svc.registered, clock=clock)
    visas, problems = collect_visas(
        "researcher", identities=IdentityService(store.kernel), minter=minter, upstream=["u1"]
    )
    assert visas == ["u1"] and [(p.where, p.reason) for p in problems] == [("minted", "mint_failed")]
