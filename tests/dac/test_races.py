"""Renew against revoke, and re-vouch against revoke, in two processes, paused at a chosen point.

Each test pauses one change inside its store transaction in another process (after it read the
record it decides on), runs the competing change here, then lets the paused one finish
(:mod:`tests.dac.interleave`). On main, a renewal that had read the grant before a concurrent
revocation wrote its stale copy back and the grant was live again; a re-vouch overwrote a
revoked ResearcherStatus. Here, on SQLite and Redis alike, the revocation survives whatever the
order: the grant ends revoked, the revoked record is never written again, and the log holds one
revocation, after any renewal.
"""

from __future__ import annotations

from typing import Any

from broker.dac.errors import Conflict
from broker.dac.grants import GrantRequest
from broker.dac.records import Grant, RegisteredAccess
from broker.dac.services import DacServices
from broker.settings import Settings
from tests.dac.conftest import DAY, T0, Clock
from tests.dac.interleave import PausedChange, meanwhile
from tests.support.legacy_store import Store


def _events(store: Store) -> list[str]:
    return [r.event["event"] for r in store.audit_records()]


def _grant(svc: DacServices) -> Grant:
    return svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=T0 + 30 * DAY, reason="study"))


def test_renew_that_read_the_grant_before_a_revoke_committed_never_revives_it(
    settings: Settings, store: Store, svc: DacServices, clock: Clock
) -> None:
    grant = _grant(svc)
    renew = PausedChange(settings, clock(), "renew", actor="member-a", grant=grant.id, end=T0 + 90 * DAY)
    revoked, other = meanwhile(lambda: svc.grants.revoke("chair-a", grant.id, "misuse"), renew)

    assert isinstance(revoked, Grant) and revoked.revoked_by == "chair-a"
    final = svc.repository.grant(grant.id)
    assert final is not None and final.revoked_at is not None and final.revoked_by == "chair-a"
    assert not final.live(int(clock())) and svc.grants.live_grants("researcher") == []
    if settings.store.backend == "sqlite":  # the renewal held the write lock: it committed first
        assert other.ok and final.end == T0 + 90 * DAY
        assert _events(store) == ["grants.create", "grants.renew", "grants.revoke"]
    else:  # the revocation committed first: the renewal ran again, saw it, and refused
        assert not other.ok and other.code == Conflict("").code and final.end == T0 + 30 * DAY
        assert _events(store) == ["grants.create", "grants.revoke"]
    assert svc.repository.grant_slot_holder("researcher", "EGAD-A1", "A") is None


def test_revoke_paused_before_commit_wins_over_a_renewal_made_meanwhile(
    settings: Settings, store: Store, svc: DacServices, clock: Clock
) -> None:
    grant = _grant(svc)
    revoke = PausedChange(settings, clock(), "revoke", actor="chair-a", grant=grant.id, reason="misuse")
    renewed, other = meanwhile(lambda: svc.grants.renew("member-a", grant.id, T0 + 90 * DAY), revoke)

    assert other.ok and other.record is not None and other.record["revoked_by"] == "chair-a"
    final = svc.repository.grant(grant.id)
    assert final is not None and final.revoked_at is not None and final.revoked_by == "chair-a"
    if settings.store.backend == "sqlite":  # the renewal waited for the revocation, then refused
        assert isinstance(renewed, Conflict)
        assert _events(store) == ["grants.create", "grants.revoke"]
    else:  # the renewal committed while the revocation was paused; the revocation ran again on it
        assert isinstance(renewed, Grant) and final.end == T0 + 90 * DAY
        assert _events(store) == ["grants.create", "grants.renew", "grants.revoke"]


def _vouched(svc: DacServices) -> RegisteredAccess:
    """researcher-2 holds a peer ResearcherStatus vouched by researcher; member-a may vouch too."""
    svc.registered.grant_status("member-b", "researcher", dac="B")
    svc.registered.grant_status("member-b", "member-a", dac="B")
    return svc.registered.vouch("researcher", "researcher-2", "my postdoc")


def _record(svc: DacServices, record_id: str) -> RegisteredAccess:
    found = svc.repository.registered_record(record_id)
    assert found is not None
    return found


def _check_revoked_stays(svc: DacServices, first: RegisteredAccess, now: int) -> None:
    old = _record(svc, first.id)
    assert (old.revoked_by, old.revoke_reason) == ("admin", "not a researcher") and old.revoked_at is not None
    (live,) = svc.registered.live_records("researcher-2")
    assert live.id != first.id and live.granted_by == "member-a" and live.live(now)


def test_re_vouch_that_read_the_live_record_before_its_revocation_never_unrevokes_it(
    settings: Settings, store: Store, svc: DacServices, clock: Clock
) -> None:
    first = _vouched(svc)
    vouch = PausedChange(settings, clock(), "vouch", actor="member-a", identity="researcher-2", reason="again")
    result, other = meanwhile(lambda: svc.registered.revoke("admin", first.id, "not a researcher"), vouch)

    assert isinstance(result, RegisteredAccess) and other.ok
    _check_revoked_stays(svc, first, int(clock()))
    vouches = [r.event for r in store.audit_records() if r.event["event"] == "registered.vouch"]
    revocations = [r.event for r in store.audit_records() if r.event["event"] == "registered.revoke"]
    assert [e["grant"] for e in revocations] == [first.id]
    if settings.store.backend == "sqlite":  # the re-vouch committed first and superseded the live record
        assert vouches[-1].get("supersedes") == first.id and _record(svc, first.id).superseded_at is not None
    else:  # the revocation committed first: the re-vouch ran again and found the slot free
        assert "supersedes" not in vouches[-1] and _record(svc, first.id).superseded_at is None


def test_revocation_paused_before_commit_survives_a_re_vouch_made_meanwhile(
    settings: Settings, store: Store, svc: DacServices, clock: Clock
) -> None:
    first = _vouched(svc)
    revoke = PausedChange(
        settings, clock(), "revoke_registered", actor="admin", record=first.id, reason="not a researcher"
    )
    result, other = meanwhile(lambda: svc.registered.vouch("member-a", "researcher-2", "again"), revoke)

    assert isinstance(result, RegisteredAccess) and other.ok
    record: dict[str, Any] = other.record or {}
    assert record["id"] == first.id and record["revoked_by"] == "admin"
    _check_revoked_stays(svc, first, int(clock()))
    assert [r.event["grant"] for r in store.audit_records() if r.event["event"] == "registered.revoke"] == [first.id]
