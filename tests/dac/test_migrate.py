"""``ga4gh-broker dac migrate``: first-release DAC records move to their own kinds, once, losing nothing."""

from __future__ import annotations

import pytest

from broker.core.models import RESEARCHER_STATUS
from broker.dac.errors import Conflict
from broker.dac.grants import GrantRequest
from broker.dac.migrate import migrate
from broker.dac.records import Grant as StoredGrant
from broker.dac.services import DacServices
from broker.store.kernel import Kernel
from tests.dac.conftest import DAY, T0, Clock, SettingsWithDac
from tests.dac.test_commands import run
from tests.support.legacy_store import Store

FOREVER = 253_402_300_799


def first_release(store: Store) -> dict[str, StoredGrant]:
    """Records as the first release wrote them: all of them grants, told apart by the dataset."""

    def grant(gid: str, who: str, dataset: str, dac: str, **more: object) -> StoredGrant:
        fields: dict[str, object] = {"granted_by": "chair-a", "granted_at": T0 - DAY, "start": T0 - DAY, "end": FOREVER}
        fields.update(more)
        made = StoredGrant(id=gid, identity_id=who, dataset=dataset, dac=dac, **fields)  # type: ignore[arg-type]
        store.put_grant(made)
        return made

    return {
        "member": grant("dac-member:A:researcher-2", "researcher-2", "ga4gh-broker:dac-member:A:member", "A"),
        "removed": grant(
            "dac-member:A:researcher",
            "researcher",
            "ga4gh-broker:dac-member:A:chair",
            "A",
            revoked_at=T0 - 10,
            revoked_by="admin",
        ),
        "status": grant(
            "registered:ResearcherStatus:so::researcher",
            "researcher",
            "ga4gh-broker:registered-access:ResearcherStatus:so",
            "",
            end=T0 + DAY,
        ),
        "older": grant("g-older", "researcher", "EGAD-A1", "A", end=T0 + 10 * DAY),
        "newer": grant("g-newer", "researcher", "EGAD-A1", "A", end=T0 + 20 * DAY, granted_at=T0 - 5),
        "single": grant("g-single", "researcher-2", "EGAD-B1", "B", end=T0 + 20 * DAY),
        "odd": grant("dac-member:A:x", "x", "ga4gh-broker:dac-member:A:owner", "A"),
    }


def test_migration_moves_memberships_and_registered_access_and_claims_grant_slots_once(
    svc: DacServices, store: Store, kernel: Kernel, clock: Clock
) -> None:
    old = first_release(store)
    assert svc.roles.role("researcher-2", "A") is None and svc.registered.live_records("researcher") == []

    report = migrate(kernel, clock)
    assert set(report.memberships) == {old["member"].id, old["removed"].id}
    assert report.registered == [old["status"].id]
    assert set(report.slots) == {"g-newer", "g-single"} and report.duplicates == ["g-older"]
    assert report.skipped == [old["odd"].id]

    assert svc.roles.role("researcher-2", "A") == "member" and svc.roles.role("researcher", "A") is None
    (status,) = svc.registered.live_records("researcher")
    assert (status.id, status.visa_type, status.by, status.dac) == (old["status"].id, RESEARCHER_STATUS, "so", "")
    assert svc.repository.grant(old["member"].id) is None, "the first-release record is gone"
    with pytest.raises(Conflict):  # the slot is held now, as for grants made since
        svc.grants.grant("admin", GrantRequest("researcher-2", "EGAD-B1", end=T0 + DAY))
    assert svc.repository.grant_slot_holder("researcher", "EGAD-A1", "A") == "g-newer"
    events = [r.event for r in store.audit_records()]
    assert {e["event"] for e in events} == {"dac.migrate"} and len(events) == report.changed

    again = migrate(kernel, clock)
    assert again.changed == 0 and again.duplicates == ["g-older"] and again.skipped == [old["odd"].id]


def test_migrate_command(settings: SettingsWithDac, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    first_release(store)
    assert run(settings, "dac", "migrate") == 0
    out = capsys.readouterr().out.splitlines()
    # The command judges by the real clock: the fixtures' grants (2025) have ended, so no slot is claimed.
    assert out == [
        "moved 2 membership(s), 1 registered-access record(s); 0 grant(s) claimed their slot",
        "left alone (not a record this broker wrote): dac-member:A:x",
    ]
