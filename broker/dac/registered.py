"""Registered access (Passport 1.2, "Registered Access"): accepted terms and researcher status.

Three kinds of record, each minted into a visa with value ``REGISTERED_ACCESS_DOI``:

- ``AcceptedTermsAndPolicies`` ``by: self``: the researcher accepts the terms themselves
  (their account page); only they can accept or withdraw it. Source: the site's.
- ``ResearcherStatus`` ``by: so``: a signing official says so: a site admin (source: the
  site's) or a member of a DAC (source: that DAC's URL).
- ``ResearcherStatus`` ``by: peer``: a researcher who holds a live ResearcherStatus vouches
  for another; the new record carries the voucher's source (the spec's "a person at source
  who holds the same visa type and value") and names the voucher's status record as its
  ``basis``.

Every decision is a record with an id of its own (:class:`~broker.dac.records.RegisteredAccess`).
At most one record is live per (kind, authority, researcher): accepting again, granting again or
vouching again makes a NEW record, made only by someone entitled to make it, and marks the live
one ``superseded`` in the same transaction (its visas stop verifying at once; the new record's
visas replace them). A revoked record stays revoked forever: no later decision writes to it
(THREAT-MODEL UI-14: the first release kept one record per slot, so a re-vouch overwrote a
revocation and a revoked status came back).

Revocation: a site admin any record; a DAC member the records of their DAC; a voucher their own
vouch; the researcher their own acceptance. Everything else is :class:`Forbidden`, audited, and
changes nothing. Revoking a revoked record succeeds and writes nothing (a retry converges); the
``on_revoke`` hooks run again.

**A revoked voucher's vouches stay.** When a voucher's own ResearcherStatus is revoked (or ends),
the vouches they made before stay live until their own end or their own revocation; the voucher
can make no new vouch (entitlement is checked inside the vouch's transaction, so a vouch racing
the revocation of its voucher's status either commits first, as a decision taken while entitled,
or is refused). Why not revoke them with it:

- a vouch is the voucher's decision at the time, taken while they were entitled to take it, and
  it is audited as such; the GA4GH definition asks for a person "who holds" the status when they
  vouch, not for as long as the vouchee's status lasts;
- statuses are revoked for very different reasons (left the institute, moved to another DAC,
  found to be no researcher); the broker cannot tell them apart, and cutting every vouchee's
  access because their voucher changed jobs would be wrong more often than right;
- cascading would be an unbounded, transitive write (vouchees vouch in turn) in one transaction.

Where the revocation means the vouches are suspect too, a site admin lists them
(:meth:`RegisteredAccessService.vouches_by`, found by the ``voucher:<id>`` index term) and revokes
each; every vouch names its ``basis``, so the chain can be followed.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Sequence

from broker.core.models import ACCEPTED_TERMS_AND_POLICIES, RESEARCHER_STATUS
from broker.dac import audit
from broker.dac.committees import Directory
from broker.dac.errors import Forbidden, NotFound, ValidationError
from broker.dac.grants import RevokeHook, check_reason
from broker.dac.identities import IdentityLookup
from broker.dac.members import Roles
from broker.dac.records import REGISTERED_KINDS, SITE, RegisteredAccess
from broker.dac.repository import DacRepository, DacTx

log = logging.getLogger("broker.dac")

__all__ = ["SITE", "RegisteredAccessService", "new_record_id"]


def new_record_id() -> str:
    """128 random bits, URL-safe, with no ``.`` (minted visa ids append ``.<random>``)."""
    return secrets.token_urlsafe(16)


def _order(record: RegisteredAccess) -> tuple[int, str, str, str, str]:
    return (record.granted_at, record.visa_type, record.by, record.dac, record.id)


class _VoucherNotEntitled(Exception):
    """Raised inside a vouch's transaction when the voucher holds no live ResearcherStatus (then)."""


class RegisteredAccessService:
    """Accept terms, grant and vouch researcher status, revoke; list what is live."""

    def __init__(
        self,
        repository: DacRepository,
        directory: Directory,
        roles: Roles,
        identities: IdentityLookup,
        *,
        clock: Callable[[], float] = time.time,
        on_revoke: Sequence[RevokeHook] = (),
    ) -> None:
        self.repository = repository
        self.directory = directory
        self.roles = roles
        self.identities = identities
        self.clock = clock
        self.on_revoke = tuple(on_revoke)
        self._lifetime = int(directory.settings.registered_access_days * 86400)

    def _now(self) -> int:
        return int(self.clock())

    def _deny(self, action: str, actor: str | None, message: str, **target: str) -> Forbidden:
        audit.denied(self.repository, self._now(), action, actor, **target)
        return Forbidden(message)

    def _revoked(self, record_id: str) -> None:
        for hook in self.on_revoke:
            try:
                hook(record_id)
            except Exception:  # the change stands; caches still end at the visa's short exp
                log.exception("revocation hook failed for registered-access record %s", record_id)

    def _usable(self, record: RegisteredAccess, now: int) -> bool:
        """Live, of a known kind, and decided by the site or a DAC that still exists."""
        return (
            record.live(now)
            and (record.visa_type, record.by) in REGISTERED_KINDS
            and (record.dac == SITE or self.directory.get(record.dac) is not None)
        )

    def _status_basis(self, records: Sequence[RegisteredAccess], now: int) -> RegisteredAccess | None:
        """The voucher's status a vouch relies on: from a signing official before a vouched one, oldest first."""
        mine = [r for r in records if r.visa_type == RESEARCHER_STATUS and self._usable(r, now)]
        return min(mine, key=lambda r: (r.by != "so", r.granted_at, r.id)) if mine else None

    def _make(
        self,
        actor: str | None,
        event: str,
        visa_type: str,
        by: str,
        dac: str | None,
        identity_id: str,
        reason: str,
    ) -> RegisteredAccess:
        """One new record in ONE transaction: supersede the slot's live record, claim the slot, audit.

        ``dac`` None means a peer vouch: the voucher's live status is read inside the
        transaction, and its DAC becomes the record's (raises _VoucherNotEntitled without one).
        """
        if not isinstance(identity_id, str) or not identity_id or self.identities.get(identity_id) is None:
            raise ValidationError("no broker identity with that id", {"identity": "unknown identity"})
        reason = check_reason(reason)
        now = self._now()
        record_id = new_record_id()

        def run(tx: DacTx) -> tuple[RegisteredAccess, RegisteredAccess | None]:
            basis: RegisteredAccess | None = None
            authority = dac
            if authority is None:
                basis = self._status_basis(tx.registered.find(f"identity:{actor}"), now)
                if basis is None:
                    raise _VoucherNotEntitled()
                authority = basis.dac
            new = RegisteredAccess(
                id=record_id,
                visa_type=visa_type,
                by=by,
                dac=authority,
                identity_id=identity_id,
                granted_by=actor or "",
                granted_at=now,
                start=now,
                end=now + self._lifetime,
                reason=reason,
                basis=basis.id if basis is not None else None,
            )
            holder = tx.registered_slot(visa_type, by, authority, identity_id)
            superseded = None
            if holder is not None and holder.live(now):
                superseded = dataclasses.replace(holder, superseded_at=now, superseded_by=new.id)
                tx.registered.put(superseded)
            tx.claim_registered(new)
            extra: dict[str, str] = {}
            if superseded is not None:
                extra["supersedes"] = superseded.id
            if basis is not None:
                extra["basis"] = basis.id
            tx.audit(audit.event(event, actor, reason=reason, **audit.registered_fields(new), **extra), now)
            return new, superseded

        new, superseded = self.repository.transact(run)
        if superseded is not None:
            self._revoked(superseded.id)  # its visas no longer verify; caches drop them
        return new

    # ------------------------------------------------------------------ changes

    def accept_terms(self, actor: str | None) -> RegisteredAccess:
        """The researcher ``actor`` accepts the registered-access terms (by: self); again: a new record."""
        if actor is None:
            raise self._deny("registered.accept", actor, "Log in to accept the terms.")
        return self._make(
            actor, "registered.accept", ACCEPTED_TERMS_AND_POLICIES, "self", SITE, actor, "accepted by the researcher"
        )

    def grant_status(
        self, actor: str | None, identity_id: str, dac: str | None = None, reason: str = ""
    ) -> RegisteredAccess:
        """ResearcherStatus by: so, from a site admin (``dac`` None) or a member of ``dac``."""
        if dac is None:
            if not self.directory.is_admin(actor):
                raise self._deny(
                    "registered.status",
                    actor,
                    "Only a site admin grants status for the site.",
                    identity=str(identity_id)[:200],
                )
            return self._make(actor, "registered.status", RESEARCHER_STATUS, "so", SITE, identity_id, reason)
        committee = self.directory.get(dac)
        if committee is None or not (self.directory.is_admin(actor) or self.roles.role(actor, dac) is not None):
            raise self._deny(
                "registered.status",
                actor,
                "You may not grant status for this DAC.",
                identity=str(identity_id)[:200],
                dac=str(dac)[:200],
            )
        return self._make(actor, "registered.status", RESEARCHER_STATUS, "so", committee.id, identity_id, reason)

    def vouch(self, actor: str | None, identity_id: str, reason: str = "") -> RegisteredAccess:
        """``actor``, who holds a live ResearcherStatus, vouches for ``identity_id`` (by: peer).

        The voucher's status is read again inside the transaction that writes the vouch, so a
        voucher whose status was revoked a moment before is refused (see the module docstring).
        """
        if actor is None or self._status_basis(self.repository.registered_of(actor), self._now()) is None:
            raise self._deny(
                "registered.vouch",
                actor,
                "Only a researcher with ResearcherStatus can vouch.",
                identity=str(identity_id)[:200],
            )
        if identity_id == actor:
            raise ValidationError("you cannot vouch for yourself", {"identity": "yourself"})
        try:
            return self._make(actor, "registered.vouch", RESEARCHER_STATUS, "peer", None, identity_id, reason)
        except _VoucherNotEntitled:
            raise self._deny(
                "registered.vouch",
                actor,
                "Only a researcher with ResearcherStatus can vouch.",
                identity=str(identity_id)[:200],
            ) from None

    def revoke(self, actor: str | None, record_key: str, reason: str) -> RegisteredAccess:
        """Revoke one record (see the module docstring for who may); a revoked record is answered as it is."""
        found = self.repository.registered_record(record_key)
        if actor is None:
            raise self._deny("registered.revoke", actor, "Log in first.", record=str(record_key)[:200])
        if found is None:
            raise NotFound("no registered-access record with that id")
        allowed = (
            self.directory.is_admin(actor)
            or (found.dac != SITE and self.roles.role(actor, found.dac) is not None)
            or (found.by == "peer" and found.granted_by == actor)
            or (found.by == "self" and found.identity_id == actor)
        )
        if not allowed:
            raise self._deny("registered.revoke", actor, "You may not revoke this record.", record=found.id)
        reason = check_reason(reason, required=found.by != "self")
        now = self._now()

        def run(tx: DacTx) -> RegisteredAccess:
            current = tx.registered.get(found.id)
            if current is None:
                raise NotFound("no registered-access record with that id")
            if current.revoked_at is not None:
                return current
            revoked = dataclasses.replace(current, revoked_at=now, revoked_by=actor, revoke_reason=reason)
            holder = tx.registered_slot(current.visa_type, current.by, current.dac, current.identity_id)
            tx.release_registered(revoked, holder)
            tx.audit(audit.event("registered.revoke", actor, reason=reason, **audit.registered_fields(revoked)), now)
            return revoked

        revoked = self.repository.transact(run)
        self._revoked(revoked.id)
        return revoked

    # ------------------------------------------------------------------ reading

    def live_records(self, identity_id: str | None) -> list[RegisteredAccess]:
        """Every live registered-access record of ``identity_id`` (for minting; no actor)."""
        if identity_id is None:
            return []
        now = self._now()
        return sorted((r for r in self.repository.registered_of(identity_id) if self._usable(r, now)), key=_order)

    def records_of(self, actor: str | None, identity_id: str) -> list[RegisteredAccess]:
        """Every registered-access record of ``identity_id`` (revoked, superseded too): for them or a site admin."""
        if actor is None or (actor != identity_id and not self.directory.is_admin(actor)):
            raise self._deny(
                "registered.list", actor, "You may only see your own records.", identity=str(identity_id)[:200]
            )
        return sorted(self.repository.registered_of(identity_id), key=_order)

    def vouches_by(self, actor: str | None, voucher: str) -> list[RegisteredAccess]:
        """Every vouch ``voucher`` made (live or not): for the voucher or a site admin (see the module docstring)."""
        if actor is None or (actor != voucher and not self.directory.is_admin(actor)):
            raise self._deny(
                "registered.vouches", actor, "You may only see your own vouches.", voucher=str(voucher)[:200]
            )
        return sorted(self.repository.vouches_by(voucher), key=_order)
