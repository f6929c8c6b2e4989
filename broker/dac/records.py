"""The DAC area's records: grants, memberships and registered-access decisions (frozen dataclasses).

Each is kept on the store kernel under a kind of its own (:mod:`broker.dac.repository`):

- :class:`Grant`: a DAC's decision that a researcher may access a dataset. Its fields and JSON
  layout are those of the first release's ``broker.store.base.Grant`` (kind ``grant``), so
  grants written before the DAC area owned them read back unchanged.
- :class:`Membership`: an identity added to a DAC through the store (members declared in the
  settings file are not records). One record per (DAC, identity); a removal is kept on it.
- :class:`RegisteredAccess`: a registered-access decision (Passport 1.2): accepted terms
  (``by: self``) or researcher status (``by: so`` / ``peer``). Every decision is a record with
  an id of its own. A revoked record stays revoked forever; a renewal is a NEW record, and the
  record it replaces is marked ``superseded`` (never revived).

Everything here is data and pure predicates; what may change a record, and how, is in the
services (:mod:`broker.dac.grants`, :mod:`broker.dac.members`, :mod:`broker.dac.registered`).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.core.models import ACCEPTED_TERMS_AND_POLICIES, RESEARCHER_STATUS

#: The ``dac`` of a record the site itself decided (registered access by a site admin or the researcher).
SITE = ""

#: (visa type, by) pairs a registered-access record may hold.
REGISTERED_KINDS: frozenset[tuple[str, str]] = frozenset(
    {
        (ACCEPTED_TERMS_AND_POLICIES, "self"),
        (RESEARCHER_STATUS, "so"),
        (RESEARCHER_STATUS, "peer"),
    }
)

#: The label the first release used as a registered-access record's ``dataset``; audit events keep it.
LEGACY_REGISTERED_PREFIX = "ga4gh-broker:registered-access:"


@dataclass(frozen=True)
class Grant:
    """A DAC's decision that a researcher may access a dataset, from ``start`` to ``end``.

    ``granted_by`` / ``granted_at`` are the last decision (a renewal is a new decision, and
    ``granted_at`` becomes the visa's ``asserted``). Revocation is kept on the record.
    """

    id: str
    identity_id: str
    dataset: str
    dac: str
    granted_by: str
    granted_at: int
    start: int
    end: int
    reason: str = ""
    revoked_at: int | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None
    application: str | None = None  # the application whose decision made it (None: a direct grant)
    purpose_codes: tuple[str, ...] = ()  # the research purpose (DUO terms) declared in that application

    def live(self, now: int) -> bool:
        """In force at ``now``: not revoked and ``start <= now < end``."""
        return self.revoked_at is None and self.start <= now < self.end


#: Application states (see :mod:`broker.dac.applications` for the transitions).
DRAFT = "draft"
SUBMITTED = "submitted"
RETURNED = "returned"
APPROVED = "approved"
REJECTED = "rejected"
WITHDRAWN = "withdrawn"
CLOSED = "closed"
APPLICATION_STATES = (DRAFT, SUBMITTED, RETURNED, APPROVED, REJECTED, WITHDRAWN, CLOSED)
EDITABLE_STATES = (DRAFT, RETURNED)  # the applicant may change and (re)submit it
OPEN_STATES = (DRAFT, SUBMITTED, RETURNED)  # not decided yet: the applicant may withdraw it


@dataclass(frozen=True)
class Application:
    """A researcher's request for access to one or more datasets of one DAC, and its decision.

    The form's answers (``title`` .. ``accepted_terms``) are the applicant's; everything else is
    derived by the service. ``approvals`` lists the distinct members who approved the current
    submission, with the end each proposed in ``approval_ends`` (same order); the grant ends at
    the earliest of them, so no approver's limit is exceeded. ``grants`` are the grant ids the
    approval made. ``accepted_terms`` holds ``<dataset>@<version>`` per dataset that has terms.
    """

    id: str
    dac: str
    datasets: tuple[str, ...]
    applicant: str
    state: str
    created_at: int
    updated_at: int
    title: str = ""
    purpose_codes: tuple[str, ...] = ()
    purpose_text: str = ""
    institution: str = ""
    co_applicants: tuple[str, ...] = ()  # e-mail addresses, lower-cased
    accepted_terms: tuple[str, ...] = ()
    submitted_at: int | None = None
    approvals: tuple[str, ...] = ()
    approval_ends: tuple[int, ...] = ()
    decided_at: int | None = None
    decided_by: str | None = None
    decision_reason: str = ""
    grants: tuple[str, ...] = ()
    closed_reason: str = ""


@dataclass(frozen=True)
class Comment:
    """One message in an application's thread, between the applicant side and the DAC."""

    id: str
    application: str
    author: str
    at: int
    text: str
    side: str  # "applicant" | "dac"


@dataclass(frozen=True)
class Membership:
    """An identity's seat on a DAC, added by a chair or a site admin.

    ``added_by`` / ``added_at`` say who seated them (since the last removal); a role change
    keeps them and records ``changed_by`` / ``changed_at``. A removal is kept on the record.
    """

    dac: str
    identity_id: str
    role: str
    added_by: str
    added_at: int
    reason: str = ""
    changed_by: str | None = None
    changed_at: int | None = None
    removed_at: int | None = None
    removed_by: str | None = None
    remove_reason: str | None = None

    @property
    def live(self) -> bool:
        return self.removed_at is None


@dataclass(frozen=True)
class RegisteredAccess:
    """One registered-access decision about ``identity_id`` (see the module docstring).

    ``dac`` is the DAC whose ``source`` the visa carries, or :data:`SITE`. For a peer vouch,
    ``granted_by`` is the voucher and ``basis`` the id of the voucher's own ResearcherStatus
    record the vouch relied on.
    """

    id: str
    visa_type: str
    by: str
    dac: str
    identity_id: str
    granted_by: str
    granted_at: int
    start: int
    end: int
    reason: str = ""
    basis: str | None = None
    revoked_at: int | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None
    superseded_at: int | None = None
    superseded_by: str | None = None

    def live(self, now: int) -> bool:
        """In force at ``now``: neither revoked nor superseded, and ``start <= now < end``."""
        return self.revoked_at is None and self.superseded_at is None and self.start <= now < self.end

    @property
    def label(self) -> str:
        """The first release's ``dataset`` label of this kind of record (audit events keep it)."""
        return f"{LEGACY_REGISTERED_PREFIX}{self.visa_type}:{self.by}"
