"""Registered access (Passport 1.2, "Registered Access"): accepted terms and researcher status.

Three kinds of record, each later minted into a visa with value ``REGISTERED_ACCESS_DOI``:

- ``AcceptedTermsAndPolicies`` ``by: self``: the researcher accepts the terms themselves
  (their account page); only they can accept or withdraw it. Source: the site's.
- ``ResearcherStatus`` ``by: so``: a signing official says so: a site admin (source: the
  site's) or a member of a DAC (source: that DAC's URL).
- ``ResearcherStatus`` ``by: peer``: a researcher who holds a live ResearcherStatus vouches
  for another; the new record carries the voucher's source (the spec's "a person at source
  who holds the same visa type and value").

One record per (kind, authority, researcher): accepting again or vouching again replaces it
with a fresh start and end. Revocation: a site admin any record; a DAC member the records of
their DAC; a voucher their own vouching; the researcher their own acceptance. Everything
else is :class:`Forbidden`, audited, and changes nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from broker.core.models import ACCEPTED_TERMS_AND_POLICIES, RESEARCHER_STATUS
from broker.dac import audit
from broker.dac.committees import Directory
from broker.dac.errors import Forbidden, NotFound, ValidationError
from broker.dac.grants import check_reason
from broker.dac.members import Roles
from broker.dac.records import RegisteredAccess, as_registered, registered_dataset
from broker.store.base import Grant, Store

SITE = ""  # the ``dac`` of a record decided by the site itself


def record_id(visa_type: str, by: str, dac: str, identity_id: str) -> str:
    return f"registered:{visa_type}:{by}:{dac}:{identity_id}"


class RegisteredAccessService:
    """Accept terms, grant and vouch researcher status, revoke; list what is live."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        *,
        clock: Callable[[], float] = time.time,
        on_revoke: Callable[[Grant], None] | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self.on_revoke = on_revoke
        self.roles = Roles(store, directory, clock)
        self._lifetime = int(directory.settings.registered_access_days * 86400)

    def _now(self) -> int:
        return int(self.clock())

    def _deny(self, action: str, actor: str | None, message: str, **target: str) -> Forbidden:
        audit.denied(self.store, self._now(), action, actor, **target)
        return Forbidden(message)

    def _write(
        self, actor: str | None, event: str, visa_type: str, by: str, dac: str, identity_id: str, reason: str
    ) -> RegisteredAccess:
        if self.store.get_identity(identity_id) is None:
            raise ValidationError("no broker identity with that id", {"identity": "unknown identity"})
        now = self._now()
        key = record_id(visa_type, by, dac, identity_id)
        previous = self.store.get_grant(key)
        grant = Grant(
            id=key,
            identity_id=identity_id,
            dataset=registered_dataset(visa_type, by),
            dac=dac,
            granted_by=actor or "",
            granted_at=now,
            start=now,
            end=now + self._lifetime,
            reason=check_reason(reason),
        )

        def undo() -> None:
            if previous is not None:
                self.store.put_grant(previous)
            else:
                self.store.put_grant(
                    dataclasses.replace(grant, revoked_at=now, revoked_by="system", revoke_reason="rolled back")
                )

        self.store.put_grant(grant)
        audit.record(
            self.store,
            now,
            event,
            actor,
            undo=undo,
            type=visa_type,
            by=by,
            reason=grant.reason,
            **audit.grant_fields(grant),
        )
        result = as_registered(grant)
        assert result is not None
        return result

    # ------------------------------------------------------------------ changes

    def accept_terms(self, actor: str | None) -> RegisteredAccess:
        """The researcher ``actor`` accepts the registered-access terms (by: self)."""
        if actor is None:
            raise self._deny("registered.accept", actor, "Log in to accept the terms.")
        return self._write(
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
            return self._write(actor, "registered.status", RESEARCHER_STATUS, "so", SITE, identity_id, reason)
        committee = self.directory.get(dac)
        if committee is None or not (self.directory.is_admin(actor) or self.roles.role(actor, dac) is not None):
            raise self._deny(
                "registered.status",
                actor,
                "You may not grant status for this DAC.",
                identity=str(identity_id)[:200],
                dac=str(dac)[:200],
            )
        return self._write(actor, "registered.status", RESEARCHER_STATUS, "so", committee.id, identity_id, reason)

    def vouch(self, actor: str | None, identity_id: str, reason: str = "") -> RegisteredAccess:
        """``actor``, who holds a live ResearcherStatus, vouches for ``identity_id`` (by: peer)."""
        mine = [r for r in self.live_records(actor) if r.visa_type == RESEARCHER_STATUS] if actor else []
        if actor is None or not mine:
            raise self._deny(
                "registered.vouch",
                actor,
                "Only a researcher with ResearcherStatus can vouch.",
                identity=str(identity_id)[:200],
            )
        if identity_id == actor:
            raise ValidationError("you cannot vouch for yourself", {"identity": "yourself"})
        # Prefer the voucher's status from a signing official over one that was itself vouched.
        basis = sorted(mine, key=lambda r: (r.by != "so", r.record.granted_at))[0]
        return self._write(actor, "registered.vouch", RESEARCHER_STATUS, "peer", basis.dac, identity_id, reason)

    def revoke(self, actor: str | None, record_key: str, reason: str) -> RegisteredAccess:
        """Revoke one record (see the module docstring for who may)."""
        grant = self.store.get_grant(record_key) if isinstance(record_key, str) and record_key else None
        found = as_registered(grant) if grant is not None else None
        if actor is None:
            raise self._deny("registered.revoke", actor, "Log in first.", record=str(record_key)[:200])
        if found is None:
            raise NotFound("no registered-access record with that id")
        record = found.record
        allowed = (
            self.directory.is_admin(actor)
            or (record.dac != SITE and self.roles.role(actor, record.dac) is not None)
            or (found.by == "peer" and record.granted_by == actor)
            or (found.by == "self" and record.identity_id == actor)
        )
        if not allowed:
            raise self._deny("registered.revoke", actor, "You may not revoke this record.", record=record.id)
        reason = check_reason(reason, required=found.by != "self")
        if record.revoked_at is not None:
            return found
        now = self._now()
        revoked = dataclasses.replace(record, revoked_at=now, revoked_by=actor, revoke_reason=reason)
        self.store.put_grant(revoked)
        audit.record(
            self.store,
            now,
            "registered.revoke",
            actor,
            undo=lambda: self.store.put_grant(record),
            type=found.visa_type,
            by=found.by,
            reason=reason,
            **audit.grant_fields(revoked),
        )
        if self.on_revoke is not None:
            self.on_revoke(revoked)
        result = as_registered(revoked)
        assert result is not None
        return result

    # ------------------------------------------------------------------ reading

    def live_records(self, identity_id: str | None) -> list[RegisteredAccess]:
        """Every live registered-access record of ``identity_id`` (for minting; no actor)."""
        if identity_id is None:
            return []
        now = self._now()
        out = []
        for grant in self.store.grants_of(identity_id):
            found = as_registered(grant)
            if found is not None and grant.live(now) and (grant.dac == SITE or self.directory.get(grant.dac)):
                out.append(found)
        return out

    def records_of(self, actor: str | None, identity_id: str) -> list[RegisteredAccess]:
        """All registered-access records of ``identity_id``: for themselves or a site admin."""
        if actor is None or (actor != identity_id and not self.directory.is_admin(actor)):
            raise self._deny(
                "registered.list", actor, "You may only see your own records.", identity=str(identity_id)[:200]
            )
        return [r for g in self.store.grants_of(identity_id) if (r := as_registered(g)) is not None]
