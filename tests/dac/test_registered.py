"""Registered access records: accepted terms (self), researcher status (so, peer), who may revoke."""

from __future__ import annotations

import pytest

from broker.core.models import ACCEPTED_TERMS_AND_POLICIES, RESEARCHER_STATUS
from broker.dac.errors import Forbidden, NotFound, ValidationError
from broker.dac.services import DacServices
from tests.dac.conftest import DAY, T0, Clock
from tests.support.legacy_store import Store


def _kinds(svc: DacServices, who: str) -> set[tuple[str, str, str]]:
    return {(r.visa_type, r.by, r.dac) for r in svc.registered.live_records(who)}


def test_researcher_accepts_terms_for_themselves_only(svc: DacServices, store: Store) -> None:
    found = svc.registered.accept_terms("researcher")
    assert (found.visa_type, found.by, found.dac) == (ACCEPTED_TERMS_AND_POLICIES, "self", "")
    assert found.granted_by == "researcher" and found.end == T0 + 365 * DAY
    with pytest.raises(Forbidden):
        svc.registered.accept_terms(None)
    assert _kinds(svc, "researcher") == {(ACCEPTED_TERMS_AND_POLICIES, "self", "")}
    assert svc.repository.registered_of("researcher-2") == []


def test_status_by_so_from_admin_or_dac_member_only(svc: DacServices, store: Store) -> None:
    for who in (None, "researcher-2", "member-a", "chair-a"):
        with pytest.raises(Forbidden):
            svc.registered.grant_status(who, "researcher")  # the site's status: admins only
    for who in (None, "researcher-2", "member-b"):
        with pytest.raises(Forbidden):
            svc.registered.grant_status(who, "researcher", dac="A")
    assert svc.repository.registered_of("researcher") == []
    svc.registered.grant_status("admin", "researcher", reason="verified")
    svc.registered.grant_status("member-a", "researcher", dac="A", reason="signing official")
    assert _kinds(svc, "researcher") == {(RESEARCHER_STATUS, "so", ""), (RESEARCHER_STATUS, "so", "A")}
    with pytest.raises(ValidationError):
        svc.registered.grant_status("admin", "nobody")


def test_peer_vouching_needs_status_and_carries_the_vouchers_source(svc: DacServices) -> None:
    with pytest.raises(Forbidden):
        svc.registered.vouch("researcher", "researcher-2")
    svc.registered.grant_status("member-b", "researcher", dac="B")
    with pytest.raises(ValidationError):
        svc.registered.vouch("researcher", "researcher")
    found = svc.registered.vouch("researcher", "researcher-2", "my postdoc")
    assert (found.visa_type, found.by, found.dac, found.granted_by) == (
        RESEARCHER_STATUS,
        "peer",
        "B",
        "researcher",
    )


def test_revocation_rules_and_hook(svc: DacServices, clock: Clock, revoked: list[str]) -> None:
    site = svc.registered.grant_status("admin", "researcher")
    dac_a = svc.registered.grant_status("member-a", "researcher", dac="A")
    peer = svc.registered.vouch("researcher", "researcher-2")
    terms = svc.registered.accept_terms("researcher-2")
    for who, key in (
        ("member-a", site.id),
        ("member-b", dac_a.id),
        ("researcher-2", peer.id),
        ("researcher", terms.id),
        (None, site.id),
    ):
        with pytest.raises(Forbidden):
            svc.registered.revoke(who, key, "no")
    with pytest.raises(NotFound):
        svc.registered.revoke("admin", "registered:nothing", "no")
    clock.advance(5)
    assert svc.registered.revoke("chair-a", dac_a.id, "left the institute").revoked_at == T0 + 5
    svc.registered.revoke("researcher", peer.id, "mistake")
    svc.registered.revoke("researcher-2", terms.id, "")  # withdrawing one's own acceptance needs no reason
    svc.registered.revoke("admin", site.id, "audit")
    assert revoked == [dac_a.id, peer.id, terms.id, site.id]
    assert svc.registered.live_records("researcher") == [] and svc.registered.live_records("researcher-2") == []


def test_records_end_after_their_lifetime_and_renew_on_accepting_again(svc: DacServices, clock: Clock) -> None:
    svc.registered.accept_terms("researcher")
    clock.advance(365 * DAY)
    assert svc.registered.live_records("researcher") == []
    again = svc.registered.accept_terms("researcher")
    assert again.start == T0 + 365 * DAY and len(svc.registered.live_records("researcher")) == 1


def test_listing_records_is_for_oneself_or_admin(svc: DacServices) -> None:
    svc.registered.accept_terms("researcher")
    assert len(svc.registered.records_of("researcher", "researcher")) == 1
    assert len(svc.registered.records_of("admin", "researcher")) == 1
    with pytest.raises(Forbidden):
        svc.registered.records_of("member-a", "researcher")
