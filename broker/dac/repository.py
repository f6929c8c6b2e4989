"""The DAC area's records on the store kernel: kinds, keys, and the writes that keep the invariants.

Kinds and keys (every key built with :func:`broker.store.kernel.key_of`):

================== ===================================== ===================================================
kind               key                                   what it holds
================== ===================================== ===================================================
``grant``          the grant id                          :class:`~broker.dac.records.Grant`; terms
                                                         ``identity:<id>`` and ``dataset:<ds>`` (exactly as
                                                         the first release wrote them)
``grant-live``     (identity, dataset, DAC)              ``{"grant": id}``: the one grant holding the slot
``dac-membership`` (DAC, identity)                       :class:`~broker.dac.records.Membership`; terms
                                                         ``dac:<dac>``, ``identity:<id>``
``registered-access`` the record id                      :class:`~broker.dac.records.RegisteredAccess`;
                                                         terms ``identity:<id>`` and, for a peer vouch,
                                                         ``voucher:<id>``
``registered-live`` (visa type, by, DAC, identity)       ``{"record": id}``: the one record holding the slot
``dac-application`` the application id                   :class:`~broker.dac.records.Application`; terms
                                                         ``applicant:<id>``, ``dac:<dac>``,
                                                         ``co-applicant:<e-mail>``
``grant-reminder``  (grant id, end)                       ``{"at": ...}``: the expiry reminder was sent
``dac-application-comment`` the comment id               :class:`~broker.dac.records.Comment`; term ``app:<id>``
================== ===================================== ===================================================

Invariants are kept by the store, not by reading before writing: every change runs in ONE
kernel transaction (:meth:`DacRepository.transact`) that reads the slot record, decides, and
writes the state, the slot record and the audit event(s) together, or nothing. The kernel's
transactions are serializable (SQLite takes the write lock up front; Redis WATCHes every key
read, so a concurrent write to the slot or the record makes the transaction run again on the
new state). So of two concurrent grants for one slot exactly one claims it, and a renewal can
never write back a grant that a concurrent revocation already changed.

The slot records carry no kernel expiry: whether the holder still blocks the slot (live or not
yet started, not revoked) is decided from the holder record, in the same transaction, by the
service's clock. An expiry on the slot would make uniqueness depend on the store's clock and
the service's agreeing. The cost is one small record per slot ever used, next to grant records
that are kept forever anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from broker.dac.records import Application, Comment, Grant, Membership, RegisteredAccess
from broker.store.base import AuditRecord, StoreError
from broker.store.kernel import Kernel, Tx, key_of
from broker.store.records import Records, RecordType, TxRecords

T = TypeVar("T")

GRANTS = RecordType(
    "grant", Grant, key=lambda g: g.id, terms=lambda g: (f"identity:{g.identity_id}", f"dataset:{g.dataset}")
)


def membership_key(dac: str, identity_id: str) -> str:
    return key_of(dac, identity_id)


MEMBERSHIPS = RecordType(
    "dac-membership",
    Membership,
    key=lambda m: membership_key(m.dac, m.identity_id),
    terms=lambda m: (f"dac:{m.dac}", f"identity:{m.identity_id}"),
)
REGISTERED = RecordType(
    "registered-access",
    RegisteredAccess,
    key=lambda r: r.id,
    terms=lambda r: (f"identity:{r.identity_id}",) + ((f"voucher:{r.granted_by}",) if r.by == "peer" else ()),
)
APPLICATIONS = RecordType(
    "dac-application",
    Application,
    key=lambda a: a.id,
    terms=lambda a: (f"applicant:{a.applicant}", f"dac:{a.dac}", *(f"co-applicant:{e}" for e in a.co_applicants)),
)
COMMENTS = RecordType("dac-application-comment", Comment, key=lambda c: c.id, terms=lambda c: (f"app:{c.application}",))
GRANT_SLOT_KIND = "grant-live"
REMINDER_KIND = "grant-reminder"
REGISTERED_SLOT_KIND = "registered-live"


def grant_slot_key(identity_id: str, dataset: str, dac: str) -> str:
    return key_of(identity_id, dataset, dac)


def registered_slot_key(visa_type: str, by: str, dac: str, identity_id: str) -> str:
    # The site's own records have dac "": key_of keeps it as an empty segment, distinct from any DAC id.
    return key_of(visa_type, by, dac, identity_id)


def _slot_id(marker: dict[str, Any] | None, field: str) -> str | None:
    if marker is None:
        return None
    value = marker.get(field)
    if not isinstance(value, str) or not value:
        raise StoreError(f"stored {field} slot record is corrupt")
    return value


class DacTx:
    """The DAC records inside one kernel transaction (reads see the state before it; writes apply at commit)."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.grants: TxRecords[Grant] = TxRecords(tx, GRANTS)
        self.memberships: TxRecords[Membership] = TxRecords(tx, MEMBERSHIPS)
        self.registered: TxRecords[RegisteredAccess] = TxRecords(tx, REGISTERED)
        self.applications: TxRecords[Application] = TxRecords(tx, APPLICATIONS)
        self.comments: TxRecords[Comment] = TxRecords(tx, COMMENTS)

    def audit(self, event: dict[str, Any], at: int) -> None:
        """Append ``event`` to the audit log when (and only when) this transaction commits."""
        self.tx.audit(event, at)

    # ------------------------------------------------------------------ grants

    def grant_slot(self, identity_id: str, dataset: str, dac: str) -> Grant | None:
        """The grant holding the (researcher, dataset, DAC) slot, in whatever state, or None."""
        grant_id = _slot_id(self.tx.get(GRANT_SLOT_KIND, grant_slot_key(identity_id, dataset, dac)), "grant")
        return self.grants.get(grant_id) if grant_id is not None else None

    def claim_grant(self, grant: Grant) -> None:
        """Write ``grant`` and make it the holder of its slot (the caller decided the slot is free or its own)."""
        self.grants.put(grant)
        self.tx.put(GRANT_SLOT_KIND, grant_slot_key(grant.identity_id, grant.dataset, grant.dac), {"grant": grant.id})

    def release_grant(self, grant: Grant, holder: Grant | None) -> None:
        """Write ``grant`` (revoked) and free its slot if it holds it (``holder`` as read in this transaction)."""
        self.grants.put(grant)
        if holder is not None and holder.id == grant.id:
            self.tx.delete(GRANT_SLOT_KIND, grant_slot_key(grant.identity_id, grant.dataset, grant.dac))

    # ------------------------------------------------------------------ registered access

    def registered_slot(self, visa_type: str, by: str, dac: str, identity_id: str) -> RegisteredAccess | None:
        """The record holding the (kind, authority, researcher) slot, in whatever state, or None."""
        marker = self.tx.get(REGISTERED_SLOT_KIND, registered_slot_key(visa_type, by, dac, identity_id))
        record_id = _slot_id(marker, "record")
        return self.registered.get(record_id) if record_id is not None else None

    def claim_registered(self, record: RegisteredAccess) -> None:
        """Write ``record`` and make it the holder of its slot."""
        self.registered.put(record)
        key = registered_slot_key(record.visa_type, record.by, record.dac, record.identity_id)
        self.tx.put(REGISTERED_SLOT_KIND, key, {"record": record.id})

    def release_registered(self, record: RegisteredAccess, holder: RegisteredAccess | None) -> None:
        """Write ``record`` (revoked) and free its slot if it holds it."""
        self.registered.put(record)
        if holder is not None and holder.id == record.id:
            key = registered_slot_key(record.visa_type, record.by, record.dac, record.identity_id)
            self.tx.delete(REGISTERED_SLOT_KIND, key)


class DacRepository:
    """Typed reads of the DAC records, and :meth:`transact` for every change."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.grants: Records[Grant] = Records(kernel, GRANTS)
        self.memberships: Records[Membership] = Records(kernel, MEMBERSHIPS)
        self.registered: Records[RegisteredAccess] = Records(kernel, REGISTERED)
        self.applications: Records[Application] = Records(kernel, APPLICATIONS)
        self.comments: Records[Comment] = Records(kernel, COMMENTS)

    def transact(self, fn: Callable[[DacTx], T]) -> T:
        """Run ``fn`` as one kernel transaction (it may run more than once: it must only read and queue writes)."""
        return self.kernel.transact(lambda tx: fn(DacTx(tx)))

    # ------------------------------------------------------------------ grants

    def grant(self, grant_id: str) -> Grant | None:
        return self.grants.get(grant_id) if isinstance(grant_id, str) and grant_id else None

    def grants_of(self, identity_id: str) -> list[Grant]:
        return sorted(self.grants.find(f"identity:{identity_id}"), key=lambda g: (g.granted_at, g.id))

    def grants_for_dataset(self, dataset: str) -> list[Grant]:
        return sorted(self.grants.find(f"dataset:{dataset}"), key=lambda g: (g.granted_at, g.id))

    def grant_slot_holder(self, identity_id: str, dataset: str, dac: str) -> str | None:
        """The id of the grant holding the slot (for tests and diagnostics)."""
        return _slot_id(self.kernel.get(GRANT_SLOT_KIND, grant_slot_key(identity_id, dataset, dac)), "grant")

    # ------------------------------------------------------------------ memberships

    def membership(self, dac: str, identity_id: str) -> Membership | None:
        if not dac or not identity_id:
            return None
        return self.memberships.get(membership_key(dac, identity_id))

    def memberships_of(self, dac: str) -> list[Membership]:
        return sorted(self.memberships.find(f"dac:{dac}"), key=lambda m: m.identity_id)

    # ------------------------------------------------------------------ registered access

    def registered_record(self, record_id: str) -> RegisteredAccess | None:
        return self.registered.get(record_id) if isinstance(record_id, str) and record_id else None

    def registered_of(self, identity_id: str) -> list[RegisteredAccess]:
        return sorted(self.registered.find(f"identity:{identity_id}"), key=lambda r: (r.granted_at, r.id))

    def vouches_by(self, voucher: str) -> list[RegisteredAccess]:
        return sorted(self.registered.find(f"voucher:{voucher}"), key=lambda r: (r.granted_at, r.id))

    # ------------------------------------------------------------------ applications

    def application(self, application_id: str) -> Application | None:
        if not isinstance(application_id, str) or not application_id or len(application_id) > 64:
            return None
        return self.applications.get(application_id)

    def applications_of(self, identity_id: str) -> list[Application]:
        return sorted(self.applications.find(f"applicant:{identity_id}"), key=lambda a: (a.created_at, a.id))

    def applications_with(self, email: str) -> list[Application]:
        """The applications naming ``email`` (lower-cased) as a co-applicant."""
        return sorted(self.applications.find(f"co-applicant:{email}"), key=lambda a: (a.created_at, a.id))

    def applications_for(self, dac: str) -> list[Application]:
        return sorted(self.applications.find(f"dac:{dac}"), key=lambda a: (a.created_at, a.id))

    def comments_on(self, application_id: str) -> list[Comment]:
        return sorted(self.comments.find(f"app:{application_id}"), key=lambda c: (c.at, c.id))

    def claim_reminder(self, grant: Grant, at: int) -> bool:
        """True the first time it is asked for ``grant`` with its current end (put-if-absent: one reminder
        per grant and end, however many processes or cron runs ask); kept until the grant's end."""
        return self.kernel.add(
            REMINDER_KIND, key_of(grant.id, str(grant.end)), {"at": at}, expires_at=max(grant.end, at + 1)
        )

    # ------------------------------------------------------------------ either

    def in_force(self, record_id: str, now: int) -> bool | None:
        """Whether the grant or registered-access record ``record_id`` is live at ``now``; None if unknown."""
        grant = self.grant(record_id)
        if grant is not None:
            return grant.live(now)
        record = self.registered_record(record_id)
        if record is not None:
            return record.live(now)
        return None

    # ------------------------------------------------------------------ audit log

    def audit_append(self, event: dict[str, Any], at: int) -> AuditRecord:
        """A standalone audit record (refusals: nothing else is written with them)."""
        return self.kernel.audit_append(event, at)

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]:
        return self.kernel.audit_records(after_seq)
