"""Moving the first release's DAC records to the DAC area's own kinds (``ga4gh-broker dac migrate``).

The first release kept every DAC decision as a ``grant`` record: memberships under the dataset
``ga4gh-broker:dac-member:<dac>:<role>`` (id ``dac-member:<dac>:<identity>``) and registered
access under ``ga4gh-broker:registered-access:<type>:<by>`` (id
``registered:<type>:<by>:<dac>:<identity>``), and kept no slot records. :func:`migrate` moves
each such record, in one transaction per record that also appends a ``dac.migrate`` audit event:

- a membership record becomes a :class:`~broker.dac.records.Membership` (its revocation becomes
  the removal); when a membership of the new kind already exists, that one is newer and stays;
- a registered-access record becomes a :class:`~broker.dac.records.RegisteredAccess` with the
  SAME id (visas minted from it keep naming it), its revocation kept; a live one claims its slot
  unless a live record of the new kind holds it, and is then marked superseded by that one;
- every outstanding dataset grant claims its (researcher, dataset, DAC) slot. Where the first
  release let several outstanding grants share a slot (concurrent requests made duplicates), the
  latest decision claims it and the others are reported by id, for a DAC member to revoke: the
  migration decides nothing a DAC has not.

Running it again finds nothing to do. Records that do not parse are reported and left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from broker.dac.committees import ROLES
from broker.dac.records import LEGACY_REGISTERED_PREFIX, REGISTERED_KINDS, Grant, Membership, RegisteredAccess
from broker.dac.repository import DacRepository, DacTx, membership_key
from broker.dac.settings import RESERVED_PREFIX
from broker.store.kernel import Kernel

MEMBER_PREFIX = RESERVED_PREFIX + "dac-member:"
REGISTERED_PREFIX = LEGACY_REGISTERED_PREFIX
MIGRATION_ACTOR = "ga4gh-broker dac migrate"


@dataclass
class MigrationReport:
    """What one run did, by record id."""

    memberships: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    slots: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # outstanding grants sharing a slot, left for a DAC
    skipped: list[str] = field(default_factory=list)  # first-release records that do not parse

    @property
    def changed(self) -> int:
        return len(self.memberships) + len(self.registered) + len(self.slots)


def _membership(legacy: Grant) -> Membership | None:
    dac, _, role = legacy.dataset[len(MEMBER_PREFIX) :].rpartition(":")
    if role not in ROLES or dac != legacy.dac or legacy.id != f"dac-member:{dac}:{legacy.identity_id}":
        return None
    return Membership(
        dac=dac,
        identity_id=legacy.identity_id,
        role=role,
        added_by=legacy.granted_by,
        added_at=legacy.granted_at,
        reason=legacy.reason,
        removed_at=legacy.revoked_at,
        removed_by=legacy.revoked_by,
        remove_reason=legacy.revoke_reason,
    )


def _registered(legacy: Grant) -> RegisteredAccess | None:
    visa_type, _, by = legacy.dataset[len(REGISTERED_PREFIX) :].partition(":")
    if (visa_type, by) not in REGISTERED_KINDS:
        return None
    return RegisteredAccess(
        id=legacy.id,
        visa_type=visa_type,
        by=by,
        dac=legacy.dac,
        identity_id=legacy.identity_id,
        granted_by=legacy.granted_by,
        granted_at=legacy.granted_at,
        start=legacy.start,
        end=legacy.end,
        reason=legacy.reason,
        revoked_at=legacy.revoked_at,
        revoked_by=legacy.revoked_by,
        revoke_reason=legacy.revoke_reason,
    )


def _event(kind: str, record: str, now: int, **fields: object) -> dict[str, object]:
    return {"event": "dac.migrate", "actor": MIGRATION_ACTOR, "kind": kind, "record": record, **fields}


def migrate(kernel: Kernel, clock: Callable[[], float] = time.time) -> MigrationReport:
    """Move every first-release DAC record (see the module docstring); what was done."""
    repository = DacRepository(kernel)
    report = MigrationReport()
    now = int(clock())
    outstanding: dict[tuple[str, str, str], list[Grant]] = {}
    for grant in repository.grants.scan():
        if grant.dataset.startswith(MEMBER_PREFIX):
            _move_membership(repository, grant, now, report)
        elif grant.dataset.startswith(REGISTERED_PREFIX):
            _move_registered(repository, grant, now, report)
        elif not grant.dataset.startswith(RESERVED_PREFIX) and grant.revoked_at is None and grant.end > now:
            outstanding.setdefault((grant.identity_id, grant.dataset, grant.dac), []).append(grant)
    for slot, grants in sorted(outstanding.items()):
        latest = max(grants, key=lambda g: (g.granted_at, g.id))
        report.duplicates += sorted(g.id for g in grants if g.id != latest.id)
        _claim_grant_slot(repository, slot, latest, now, report)
    return report


def _move_membership(repository: DacRepository, legacy: Grant, now: int, report: MigrationReport) -> None:
    membership = _membership(legacy)
    if membership is None:
        report.skipped.append(legacy.id)
        return

    def run(tx: DacTx) -> bool:
        if tx.grants.get(legacy.id) is None:
            return False  # moved meanwhile
        if tx.memberships.get(membership_key(membership.dac, membership.identity_id)) is None:
            tx.memberships.put(membership)
        tx.grants.delete(legacy.id)
        tx.audit(_event("membership", legacy.id, now, dac=membership.dac, identity=membership.identity_id), now)
        return True

    if repository.transact(run):
        report.memberships.append(legacy.id)


def _move_registered(repository: DacRepository, legacy: Grant, now: int, report: MigrationReport) -> None:
    record = _registered(legacy)
    if record is None:
        report.skipped.append(legacy.id)
        return

    def run(tx: DacTx) -> bool:
        if tx.grants.get(legacy.id) is None:
            return False
        moved = record
        if moved.live(now):
            holder = tx.registered_slot(moved.visa_type, moved.by, moved.dac, moved.identity_id)
            if holder is not None and holder.id != moved.id and holder.live(now):
                moved = replace(moved, superseded_at=now, superseded_by=holder.id)
                tx.registered.put(moved)
            else:
                tx.claim_registered(moved)
        else:
            tx.registered.put(moved)
        tx.grants.delete(legacy.id)
        tx.audit(_event("registered", legacy.id, now, identity=moved.identity_id, type=moved.visa_type), now)
        return True

    if repository.transact(run):
        report.registered.append(legacy.id)


def _claim_grant_slot(
    repository: DacRepository, slot: tuple[str, str, str], grant: Grant, now: int, report: MigrationReport
) -> None:
    def run(tx: DacTx) -> bool:
        holder = tx.grant_slot(*slot)
        if holder is not None and holder.revoked_at is None and holder.end > now:
            return False  # held already (by this grant, or by one made since)
        current = tx.grants.get(grant.id)
        if current is None or current.revoked_at is not None:
            return False
        tx.claim_grant(current)
        tx.audit(_event("grant-slot", grant.id, now, identity=slot[0], dataset=slot[1], dac=slot[2]), now)
        return True

    if repository.transact(run):
        report.slots.append(grant.id)
