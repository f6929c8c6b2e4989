"""Invariants the store keeps for the DAC area, on SQLite and on a real redis-server.

- one outstanding grant per (researcher, dataset, DAC), also under concurrent requests;
- one membership per (DAC, identity), also under concurrent adds;
- every change and its audit event(s) commit together, once; retries converge;
- first-release data (grants written through the typed store) reads back, and back again;
- UI-14: a revoked ResearcherStatus stays revoked; a re-vouch is a new record, only by someone
  entitled; a revoked voucher's vouches stay, and the voucher can vouch no more.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from broker.core.models import RESEARCHER_STATUS
from broker.dac.errors import Conflict, DacError, Forbidden
from broker.dac.grants import GrantRequest
from broker.dac.records import Grant as DacGrant
from broker.dac.records import Grant as StoredGrant
from broker.dac.services import DacServices
from broker.settings import Settings
from tests.dac.conftest import DAY, T0, Clock, kernel_of, services
from tests.support.legacy_store import Store, open_store

T = TypeVar("T")


def events(store: Store, after: int = 0) -> list[dict[str, Any]]:
    return [r.event for r in store.audit_records(after)]


def concurrently(settings: Settings, clock: Clock, calls: list[Callable[[DacServices], T]]) -> list[T | DacError]:
    """Run each call at the same moment, each on its own store client (as separate processes would)."""
    stores = [open_store(settings) for _ in calls]
    barrier = threading.Barrier(len(calls))
    results: list[T | DacError | None] = [None] * len(calls)
    failures: list[BaseException] = []

    def run(i: int) -> None:
        svc = services(settings, kernel_of(stores[i]), clock=clock)
        barrier.wait(timeout=10)
        try:
            results[i] = calls[i](svc)
        except DacError as exc:
            results[i] = exc
        except BaseException as exc:  # reported below: the test must see it, not a thread's stderr
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for s in stores:
        s.close()
    assert not failures, failures
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


# ---------------------------------------------------------------------------- one grant per slot


def test_four_concurrent_identical_grants_make_exactly_one_live_grant(
    settings: Settings, store: Store, svc: DacServices, clock: Clock
) -> None:
    request = GrantRequest("researcher", "EGAD-A1", end=T0 + 30 * DAY, reason="approved")
    results = concurrently(settings, clock, [lambda s: s.grants.grant("chair-a", request)] * 4)
    assert all(isinstance(r, DacGrant) for r in results), results
    assert len({r.id for r in results if isinstance(r, DacGrant)}) == 1, "every retry answers the one grant"
    live = [g for g in svc.repository.grants_of("researcher") if g.live(T0)]
    assert len(live) == 1 and svc.repository.grant_slot_holder("researcher", "EGAD-A1", "A") == live[0].id
    assert [e["event"] for e in events(store)] == ["grants.create"]


def test_four_concurrent_different_grants_for_one_slot_leave_one_and_three_conflicts(
    settings: Settings, store: Store, svc: DacServices, clock: Clock
) -> None:
    def granting(who: str, days: int) -> Callable[[DacServices], DacGrant]:
        return lambda s: s.grants.grant(who, GrantRequest("researcher", "EGAD-A1", end=T0 + days * DAY))

    calls = [granting(who, days) for who, days in (("chair-a", 10), ("admin", 20), ("chair-a", 30), ("admin", 40))]
    results = concurrently(settings, clock, calls)
    made = [r for r in results if isinstance(r, DacGrant)]
    assert len(made) == 1 and sum(isinstance(r, Conflict) for r in results) == 3, results
    assert [g.id for g in svc.repository.grants_of("researcher")] == [made[0].id]
    # Revoking the one grant leaves no access behind (on main, a duplicate kept it).
    svc.grants.revoke("admin", made[0].id, "test")
    assert svc.grants.live_grants("researcher") == []
    assert [e["event"] for e in events(store)] == ["grants.create", "grants.revoke"]


def test_a_revoked_or_ended_grant_frees_its_slot_and_a_renewal_cannot_take_it_back(
    svc: DacServices, clock: Clock
) -> None:
    first = svc.grants.grant("chair-a", GrantRequest("researcher", "A-1", end=T0 + DAY))
    clock.advance(2 * DAY)  # ended: the slot is free again
    second = svc.grants.grant("chair-a", GrantRequest("researcher", "A-1", end=T0 + 10 * DAY))
    with pytest.raises(Conflict):  # renewing the ended one would make two outstanding grants
        svc.grants.renew("member-a", first.id, T0 + 20 * DAY)
    svc.grants.revoke("member-a", second.id, "done")
    third = svc.grants.grant("chair-a", GrantRequest("researcher", "A-1", end=T0 + 5 * DAY))
    assert svc.repository.grant_slot_holder("researcher", "A-1", "A") == third.id
    assert {g.id for g, _ in svc.grants.live_grants("researcher")} == {third.id}


# ---------------------------------------------------------------------------- retries converge


def test_retried_grant_import_renew_and_member_changes_answer_what_is_there_and_log_once(
    svc: DacServices, store: Store, clock: Clock
) -> None:
    request = GrantRequest("researcher", "EGAD-A1", end=T0 + 30 * DAY, reason="study")
    made = svc.grants.grant("chair-a", request)
    clock.advance(5)
    assert svc.grants.grant("chair-a", request) == made
    with pytest.raises(Conflict):  # the same slot, another decision (another end): not a retry
        svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=T0 + 31 * DAY, reason="study"))
    with pytest.raises(Conflict):  # the same request by another person: not a retry either
        svc.grants.grant("admin", request)

    renewed = svc.grants.renew("member-a", made.id, T0 + 60 * DAY, "year two")
    clock.advance(5)
    assert svc.grants.renew("member-a", made.id, T0 + 60 * DAY, "year two") == renewed

    text = "identity,dataset,end,reason\nresearcher,A-1,1760000000,one\nresearcher-2,A-2,1760000000,two\n"
    imported = svc.grants.import_csv("chair-a", text)
    assert svc.grants.import_csv("chair-a", text) == imported

    svc.members.add("chair-a", "A", "researcher-2", "member")
    svc.members.add("chair-a", "A", "researcher-2", "member")
    svc.members.add("chair-a", "A", "researcher-2", "chair")  # a role change is a change
    svc.members.remove("chair-a", "A", "researcher-2", "left")
    svc.members.remove("chair-a", "A", "researcher-2", "left")  # removed already: success, nothing written
    assert svc.roles.role("researcher-2", "A") is None

    assert [(e["event"], e.get("via"), e.get("previous_role")) for e in events(store)] == [
        ("grants.create", None, None),
        ("grants.renew", None, None),
        ("grants.import", None, None),
        ("grants.create", "import", None),
        ("grants.create", "import", None),
        ("members.add", None, None),
        ("members.add", None, "member"),
        ("members.remove", None, None),
    ]


def test_two_concurrent_adds_of_one_member_seat_them_once(
    settings: Settings, store: Store, svc: DacServices, clock: Clock
) -> None:
    results = concurrently(settings, clock, [lambda s: s.members.add("chair-a", "A", "researcher-2", "member")] * 2)
    assert all(not isinstance(r, DacError) for r in results)
    assert [(m.identity_id, m.role) for m in svc.repository.memberships_of("A")] == [("researcher-2", "member")]
    assert [e["event"] for e in events(store)] == ["members.add"]


# ---------------------------------------------------------------------------- first-release data


def test_grants_keep_the_first_release_layout_both_ways(svc: DacServices, store: Store) -> None:
    old = StoredGrant(
        id="g-old",
        identity_id="researcher",
        dataset="EGAD-A1",
        dac="A",
        granted_by="member-a",
        granted_at=T0 - DAY,
        start=T0 - DAY,
        end=T0 + DAY,
        reason="from the first release",
    )
    store.put_grant(old)  # written by the typed store of the first release
    read = svc.repository.grant("g-old")
    first_release = dataclasses.asdict(old)
    assert (
        read is not None and {k: v for k, v in dataclasses.asdict(read).items() if k in first_release} == first_release
    )
    assert (read.application, read.purpose_codes) == (None, ())  # fields added since read as their defaults
    assert [g.id for g in svc.grants.grants_of("researcher", "researcher")] == ["g-old"]
    new = svc.grants.grant("admin", GrantRequest("researcher", "EGAD-B1", end=T0 + DAY))
    back = store.get_grant(new.id)
    assert back is not None and dataclasses.asdict(back) == {
        k: v for k, v in dataclasses.asdict(new).items() if k in dataclasses.asdict(back)
    }
    assert [g.id for g in store.grants_for_dataset("EGAD-B1")] == [new.id]  # the same index terms


# ---------------------------------------------------------------------------- UI-14 and the voucher rule


def test_ui14_a_revoked_status_stays_revoked_and_a_re_vouch_is_a_new_record_by_someone_entitled(
    svc: DacServices, store: Store, clock: Clock, revoked: list[str]
) -> None:
    svc.registered.grant_status("member-b", "researcher", dac="B")  # researcher may vouch (source B)
    svc.registered.grant_status("member-b", "member-a", dac="B")  # so may member-a
    first = svc.registered.vouch("researcher", "researcher-2", "my postdoc")
    clock.advance(10)
    svc.registered.revoke("admin", first.id, "not a researcher")
    assert svc.registered.live_records("researcher-2") == []

    with pytest.raises(Forbidden):  # an account without status cannot bring it back
        svc.registered.vouch("chair-a", "researcher-2")
    assert svc.registered.live_records("researcher-2") == []

    clock.advance(10)
    second = svc.registered.vouch("member-a", "researcher-2", "I vouch")  # entitled: a new decision
    assert second.id != first.id and second.granted_by == "member-a"
    old = svc.repository.registered_record(first.id)
    assert old is not None and (old.revoked_at, old.revoked_by, old.revoke_reason) == (
        T0 + 10,
        "admin",
        "not a researcher",
    )
    assert [r.id for r in svc.registered.live_records("researcher-2")] == [second.id]
    assert revoked == [first.id]


def test_a_revoked_vouchers_vouches_stay_and_the_voucher_cannot_vouch_again(
    svc: DacServices, store: Store, clock: Clock
) -> None:
    status = svc.registered.grant_status("admin", "researcher", reason="verified")
    vouch = svc.registered.vouch("researcher", "researcher-2", "my postdoc")
    assert vouch.basis == status.id
    svc.registered.revoke("admin", status.id, "left the institute")

    assert [r.id for r in svc.registered.live_records("researcher-2")] == [vouch.id], "the vouch stays"
    with pytest.raises(Forbidden):
        svc.registered.vouch("researcher", "member-b")
    assert svc.registered.live_records("member-b") == []
    # A site admin finds what the voucher vouched for, and decides on each.
    assert [r.id for r in svc.registered.vouches_by("admin", "researcher")] == [vouch.id]
    with pytest.raises(Forbidden):
        svc.registered.vouches_by("member-b", "researcher")
    svc.registered.revoke("admin", vouch.id, "voucher was not entitled")
    assert svc.registered.live_records("researcher-2") == []


def test_a_new_decision_supersedes_the_live_record_and_revoking_either_never_revives_the_other(
    svc: DacServices, clock: Clock, revoked: list[str]
) -> None:
    first = svc.registered.grant_status("member-a", "researcher", dac="A", reason="one")
    clock.advance(DAY)
    second = svc.registered.grant_status("chair-a", "researcher", dac="A", reason="two")
    old = svc.repository.registered_record(first.id)
    assert old is not None and (old.superseded_at, old.superseded_by) == (T0 + DAY, second.id)
    assert [r.id for r in svc.registered.live_records("researcher")] == [second.id]
    assert revoked == [first.id], "the superseded record's visas are evicted"
    svc.registered.revoke("admin", second.id, "no")
    assert svc.registered.live_records("researcher") == []
    assert {(r.visa_type, r.id) for r in svc.registered.records_of("admin", "researcher")} == {
        (RESEARCHER_STATUS, first.id),
        (RESEARCHER_STATUS, second.id),
    }
