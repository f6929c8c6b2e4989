"""Grants: the role x action matrix (GA-12), derived fields (GA-13), lifecycle, listing, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from broker.dac.errors import Conflict, Forbidden, NotFound, ValidationError
from broker.dac.grants import GrantFilter, GrantRequest, GrantService, parse_time
from broker.dac.records import Grant
from broker.dac.services import DacServices
from broker.identity.records import Identity
from tests.dac.conftest import DAY, PEOPLE, T0, Clock
from tests.support.legacy_store import Store

ROLES = (None, "researcher", "member-a", "member-b", "chair-a", "admin")


def _state(svc: DacServices) -> dict[str, Any]:
    """Every DAC record of every person (grants, memberships, registered access), to prove "nothing changed"."""
    repo = svc.repository
    out: dict[str, Any] = {}
    for who in (*PEOPLE, "extra"):
        out[who] = (repo.grants_of(who), repo.registered_of(who))
    for dac in ("A", "B"):
        out[f"dac:{dac}"] = repo.memberships_of(dac)
    return out


def _audit(store: Store) -> list[dict[str, Any]]:
    return [r.event for r in store.audit_records()]


@pytest.fixture
def prepared(svc: DacServices, store: Store) -> dict[str, Grant]:
    """A grant on DAC A's dataset and one on DAC B's, made by the admin; 'extra' added to DAC A."""
    store.put_identity(Identity(id="extra", created_at=T0))
    a = svc.grants.grant("admin", GrantRequest("researcher", "EGAD-A1", end=T0 + 30 * DAY, reason="study 1"))
    b = svc.grants.grant("admin", GrantRequest("researcher", "EGAD-B1", end=T0 + 30 * DAY, reason="study 2"))
    svc.members.add("admin", "A", "extra", "member")
    return {"a": a, "b": b}


def _actions(svc: DacServices, prepared: dict[str, Grant]) -> dict[str, Callable[[str | None], object]]:
    ga = prepared["a"].id
    return {
        "grant": lambda who: svc.grants.grant(who, GrantRequest("researcher-2", "EGAD-A1", end=T0 + 10 * DAY)),
        "grant_by_pattern": lambda who: svc.grants.grant(who, GrantRequest("researcher-2", "A-42", end=T0 + DAY)),
        "renew": lambda who: svc.grants.renew(who, ga, T0 + 60 * DAY, "extended"),
        "revoke": lambda who: svc.grants.revoke(who, ga, "ended early"),
        "get": lambda who: svc.grants.get(who, ga),
        "list_dac": lambda who: svc.grants.list(who, GrantFilter(dac="A")),
        "list_dataset": lambda who: svc.grants.list(who, GrantFilter(dataset="EGAD-A1")),
        "import": lambda who: svc.grants.import_csv(who, "identity,dataset,end\nresearcher-2,EGAD-A1,2025-12-31\n"),
        "members_list": lambda who: svc.members.list(who, "A"),
        "members_add": lambda who: svc.members.add(who, "A", "researcher-2", "member"),
        "members_remove": lambda who: svc.members.remove(who, "A", "extra", "left"),
    }


# Members decide applications; direct grants and imports are for chairs and admins (issue 15).
MEMBER_A = {"renew", "revoke", "get", "list_dac", "list_dataset", "members_list"}
ALL = MEMBER_A | {"grant", "grant_by_pattern", "import", "members_add", "members_remove"}
ALLOWED: dict[str | None, set[str]] = {
    None: set(),
    "researcher": set(),
    "member-b": set(),
    "member-a": MEMBER_A,
    "chair-a": ALL,
    "admin": ALL,
}
ACTIONS = sorted(ALL)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("who", ROLES, ids=[str(r) for r in ROLES])
def test_ga12_role_action_matrix_exact(
    svc: DacServices, store: Store, prepared: dict[str, Grant], who: str | None, action: str
) -> None:
    run = _actions(svc, prepared)[action]
    before = _state(svc)
    audit_before = len(_audit(store))
    if action in ALLOWED[who]:
        run(who)
        events = _audit(store)[audit_before:]
        reads = {"get", "list_dac", "list_dataset", "members_list"}
        if action in reads:
            assert _state(svc) == before and events == []
        else:
            assert _state(svc) != before
            assert events and all(e["actor"] == who for e in events)
    else:
        with pytest.raises(Forbidden):
            run(who)
        assert _state(svc) == before, "a refused action changed a record"
        events = _audit(store)[audit_before:]
        assert len(events) == 1 and events[0]["event"] == "dac.denied" and events[0]["actor"] == who


def test_ga12_list_without_filter_shows_only_own_dacs(svc: DacServices, prepared: dict[str, Grant]) -> None:
    assert [g.id for g in svc.grants.list("member-b")] == [prepared["b"].id]
    assert [g.id for g in svc.grants.list("member-a")] == [prepared["a"].id]
    assert {g.id for g in svc.grants.list("admin")} == {prepared["a"].id, prepared["b"].id}


def test_ga12_guessed_grant_of_other_dac_is_forbidden_not_revealed(
    svc: DacServices, prepared: dict[str, Grant]
) -> None:
    with pytest.raises(Forbidden):
        svc.grants.revoke("member-a", prepared["b"].id, "not mine")
    with pytest.raises(NotFound):
        svc.grants.revoke("member-a", "no-such-grant", "guess")
    with pytest.raises(Forbidden):  # a researcher learns nothing, not even "not found"
        svc.grants.revoke("researcher", "no-such-grant", "guess")


def test_ga13_grant_fields_are_derived_from_the_actor_and_clock(svc: DacServices, clock: Clock) -> None:
    clock.advance(123)
    grant = svc.grants.grant("chair-a", GrantRequest("researcher", "A-7", end=T0 + 5 * DAY, reason="r"))
    assert (grant.dac, grant.granted_by, grant.granted_at, grant.start) == ("A", "chair-a", T0 + 123, T0 + 123)
    assert grant.end == T0 + 5 * DAY and grant.revoked_at is None and grant.reason == "r"


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"end": T0 + 6 * 365 * DAY}, "end"),  # beyond max_grant_days (5 years)
        ({"end": T0 - 1}, "end"),
        ({"end": T0 + DAY, "start": T0 + 2 * DAY}, "end"),
        ({"end": "not a date"}, "end"),
        ({"identity": "nobody"}, "identity"),
        ({"dataset": "bad id with spaces"}, "dataset"),
        ({"dataset": "ga4gh-broker:registered-access:x"}, "dataset"),
        ({"dataset": "A-" + "x" * 200}, "dataset"),
        ({"reason": "line\x1b[31m"}, "reason"),
        ({"reason": "x" * 1001}, "reason"),
    ],
)
def test_ui12_bad_grant_input_is_a_field_error_and_changes_nothing(
    svc: DacServices, store: Store, request_kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"identity": "researcher", "dataset": "A-1", "end": T0 + DAY, **request_kwargs}
    with pytest.raises(ValidationError) as info:
        svc.grants.grant("chair-a", GrantRequest(**args))
    assert field in info.value.fields
    assert svc.repository.grants_of("researcher") == []


def test_dataset_of_no_dac_is_forbidden_to_members_and_invalid_for_admin(svc: DacServices) -> None:
    with pytest.raises(Forbidden):
        svc.grants.grant("chair-a", GrantRequest("researcher", "Z-1", end=T0 + DAY))
    with pytest.raises(ValidationError):
        svc.grants.grant("admin", GrantRequest("researcher", "Z-1", end=T0 + DAY))


def test_second_live_grant_on_same_dataset_is_a_conflict(svc: DacServices, prepared: dict[str, Grant]) -> None:
    with pytest.raises(Conflict):
        svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=T0 + DAY))


def test_renew_is_a_new_decision_and_revoked_cannot_be_renewed(
    svc: DacServices, clock: Clock, prepared: dict[str, Grant]
) -> None:
    clock.advance(DAY)
    renewed = svc.grants.renew("member-a", prepared["a"].id, T0 + 90 * DAY, "year two")
    assert (renewed.end, renewed.granted_at, renewed.granted_by) == (T0 + 90 * DAY, T0 + DAY, "member-a")
    svc.grants.revoke("member-a", renewed.id, "misuse")
    with pytest.raises(Conflict):
        svc.grants.renew("member-a", renewed.id, T0 + 100 * DAY)


def test_revoke_needs_reason_records_actor_calls_hook_and_a_second_revoke_is_the_same_success(
    svc: DacServices, store: Store, clock: Clock, prepared: dict[str, Grant], revoked: list[str]
) -> None:
    with pytest.raises(ValidationError):
        svc.grants.revoke("member-a", prepared["a"].id, "  ")
    assert revoked == []
    clock.advance(60)
    grant = svc.grants.revoke("member-a", prepared["a"].id, "data misuse")
    assert (grant.revoked_at, grant.revoked_by, grant.revoke_reason) == (T0 + 60, "member-a", "data misuse")
    assert svc.repository.grant(grant.id) == grant and revoked == [grant.id]
    event = _audit(store)[-1]
    assert event["event"] == "grants.revoke" and event["actor"] == "member-a" and event["reason"] == "data misuse"
    assert event["grant"] == grant.id and event["dataset"] == "EGAD-A1" and event["dac"] == "A"
    logged = len(_audit(store))
    clock.advance(60)
    again = svc.grants.revoke("chair-a", grant.id, "again")  # a retry, or a second member: success, as it was
    assert again == grant and svc.repository.grant(grant.id) == grant
    assert revoked == [grant.id, grant.id], "the retry must evict this process's caches again"
    assert len(_audit(store)) == logged, "the revocation is logged once"


def test_list_filters_live_and_expiring(svc: DacServices, clock: Clock) -> None:
    soon = svc.grants.grant("chair-a", GrantRequest("researcher", "A-1", end=T0 + 3 * DAY))
    clock.advance(1)
    later = svc.grants.grant("chair-a", GrantRequest("researcher", "A-2", end=T0 + 40 * DAY))
    clock.advance(1)
    gone = svc.grants.grant("chair-a", GrantRequest("researcher-2", "A-1", end=T0 + 40 * DAY))
    svc.grants.revoke("member-a", gone.id, "done")
    clock.advance(1)
    future = svc.grants.grant("chair-a", GrantRequest("researcher-2", "A-2", start=T0 + DAY, end=T0 + 9 * DAY))
    ids = lambda flt: [g.id for g in svc.grants.list("member-a", flt)]  # noqa: E731
    assert ids(GrantFilter(dac="A")) == [soon.id, later.id, gone.id, future.id]
    assert ids(GrantFilter(live=True)) == [soon.id, later.id]
    assert ids(GrantFilter(live=False)) == [gone.id, future.id]
    assert ids(GrantFilter(expiring_within_days=7)) == [soon.id]
    assert ids(GrantFilter(identity="researcher-2")) == [gone.id, future.id]
    assert ids(GrantFilter(dataset="A-2")) == [later.id, future.id]


def test_pattern_datasets_are_listed_by_a_fresh_process(svc: DacServices, store: Store, clock: Clock) -> None:
    made = svc.grants.grant("chair-a", GrantRequest("researcher", "A-99", end=T0 + DAY))
    fresh = GrantService(svc.repository, svc.directory, svc.roles, svc.grants.identities, clock=clock)  # no memory
    assert [g.id for g in fresh.list("chair-a", GrantFilter(dac="A"))] == [made.id]


def test_researcher_sees_only_own_grants(svc: DacServices, prepared: dict[str, Grant]) -> None:
    assert {g.id for g in svc.grants.grants_of("researcher", "researcher")} == {prepared["a"].id, prepared["b"].id}
    with pytest.raises(Forbidden):
        svc.grants.grants_of("researcher-2", "researcher")


def test_live_grants_skip_revoked_ended_and_regoverned(
    svc: DacServices, clock: Clock, prepared: dict[str, Grant]
) -> None:
    assert {g.id for g, _ in svc.grants.live_grants("researcher")} == {prepared["a"].id, prepared["b"].id}
    svc.grants.revoke("member-b", prepared["b"].id, "x")
    assert [g.id for g, _ in svc.grants.live_grants("researcher")] == [prepared["a"].id]
    clock.advance(31 * DAY)
    assert svc.grants.live_grants("researcher") == []


def test_members_declared_in_settings_cannot_be_removed_here(svc: DacServices) -> None:
    with pytest.raises(ValidationError):
        svc.members.remove("chair-a", "A", "member-a", "bye")
    with pytest.raises(ValidationError):
        svc.members.add("chair-a", "A", "member-a", "chair")


def test_member_added_in_store_acts_and_loses_rights_when_removed(svc: DacServices) -> None:
    grant = svc.grants.grant("chair-a", GrantRequest("researcher", "A-1", end=T0 + DAY))
    with pytest.raises(Forbidden):
        svc.grants.renew("researcher-2", grant.id, T0 + 2 * DAY)
    svc.members.add("chair-a", "A", "researcher-2", "member", "joined")
    assert [m.identity_id for m in svc.members.list("member-a", "A")] == ["chair-a", "member-a", "researcher-2"]
    grant = svc.grants.renew("researcher-2", grant.id, T0 + 2 * DAY)
    assert grant.granted_by == "researcher-2"
    svc.members.remove("admin", "A", "researcher-2", "left")
    with pytest.raises(Forbidden):
        svc.grants.revoke("researcher-2", grant.id, "after leaving")


def test_parse_time_accepts_dates_datetimes_epochs() -> None:
    assert parse_time("2025-06-15", "end") == 1_749_945_600
    assert parse_time("2025-06-15T12:00:00Z", "end") == 1_749_945_600 + 43_200
    assert parse_time("2025-06-15T14:00:00+02:00", "end") == 1_749_945_600 + 43_200
    assert parse_time(1_749_945_600, "end") == parse_time("1749945600", "end")
    for bad in ("", "tomorrow", True, -5, 10**15, "2025-13-01", None):
        with pytest.raises(ValidationError):
            parse_time(bad, "end")
