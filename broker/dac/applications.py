"""Applications for access: a researcher asks, the DAC reviews, comments and decides.

States and who moves an application between them (every transition is ONE store transaction
that writes the application, anything the decision makes, and an ``applications.<action>``
audit event with the actor and the reason, or nothing):

============== ========================== ============================================ ==========
from           action                     who                                          to
============== ========================== ============================================ ==========
(none)         create                     any signed-in identity (the applicant)       draft
draft/returned update, submit             the applicant                                same / submitted
draft/submitted/returned withdraw         the applicant                                withdrawn
submitted      approve                    a member or chair of the DAC, or a site      submitted, or
                                          admin, who is not an applicant on it         approved
submitted      reject, return             the same                                     rejected / returned
approved       revoke                     the same                                     closed
============== ========================== ============================================ ==========

Four eyes: the DAC's ``application.required_approvals`` distinct members must approve the same
submission; the approval that reaches the number creates one grant per dataset (ending at the
earliest end any approver proposed) in the same transaction. An application for a dataset the
applicant already holds a grant on is a renewal: the approval gives that grant the later end
(``grants.renew`` with ``via: application``) instead of a second grant. Two approvals committed at once
are serialized by the store, so exactly one of them sees the number reached and exactly one set
of grants is made; a withdrawal that commits first leaves the approval nothing to approve.

Conflicts of interest: nobody decides (approves, rejects, returns) an application they are an
applicant on: the applicant, or a co-applicant (an identity whose recorded e-mail is one of the
co-applicant e-mails). Co-applicants may read the application and comment on it; only the
applicant changes it.

Notifications (:class:`Notice`) are handed to the ``notify`` hooks after the transaction
committed; a failing hook is logged and never undoes or blocks the decision.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.core.conditions import compile_pattern
from broker.dac import audit
from broker.dac.committees import Committee, Directory, check_dataset_id
from broker.dac.errors import Conflict, Forbidden, NotFound, ValidationError
from broker.dac.grants import GrantService, check_reason, new_grant_id, outstanding
from broker.dac.identities import IdentityLookup, email_of
from broker.dac.members import Roles
from broker.dac.records import (
    APPLICATION_STATES,
    APPROVED,
    CLOSED,
    DRAFT,
    REJECTED,
    RETURNED,
    SUBMITTED,
    WITHDRAWN,
    Application,
    Comment,
    Grant,
)
from broker.dac.records import (
    EDITABLE_STATES as EDITABLE,
)
from broker.dac.records import (
    OPEN_STATES as OPEN,
)
from broker.dac.repository import DacRepository, DacTx
from broker.dac.settings import ApplicationSettings, DatasetTermsSettings

log = logging.getLogger("broker.dac.applications")

MAX_DATASETS = 20
MAX_TITLE_CHARS = 200
MAX_TEXT_CHARS = 4000
MAX_CO_APPLICANTS = 20
MAX_COMMENT_CHARS = 4000
EMAIL = re.compile(r"[^@\s<>\"',;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,250}[A-Za-z0-9])?\.[A-Za-z]{2,63}")
DEFAULT_LABELS = {
    "title": "Project title",
    "purpose": "Research purpose",
    "institution": "Institution",
    "co_applicants": "Co-applicants (e-mail addresses)",
    "terms": "Terms of use",
}


@dataclass(frozen=True)
class Answers:
    """What the applicant fills in (every member optional while a draft; required ones at submit)."""

    title: str | None = None
    purpose_codes: Sequence[str] | None = None
    purpose_text: str | None = None
    institution: str | None = None
    co_applicants: Sequence[str] | None = None
    accepted_terms: Sequence[str] | None = None


@dataclass(frozen=True)
class Notice:
    """Something a person should hear about: ``event`` on ``application`` (no token, no secret)."""

    event: str  # submitted | returned | approved | rejected | revoked | comment
    application: Application
    actor: str | None
    reason: str = ""


NoticeHook = Callable[[Notice], object]


@dataclass(frozen=True)
class TermsShown:
    """The terms a dataset's applicant accepts, as the form shows them."""

    dataset: str
    version: str
    title: str
    text: str
    url: str | None

    @property
    def token(self) -> str:
        """What an application records when these terms are accepted."""
        return f"{self.dataset}@{self.version}"


def new_application_id() -> str:
    return "app-" + secrets.token_urlsafe(12)


def terms_for(settings: ApplicationSettings, dataset: str) -> TermsShown | None:
    """The first terms entry of the DAC covering ``dataset``, or None when it has no terms."""
    for entry in settings.terms:
        if any(compile_pattern(p).matches(dataset) for p in entry.datasets):
            return _shown(entry, dataset)
    return None


def _shown(entry: DatasetTermsSettings, dataset: str) -> TermsShown:
    return TermsShown(dataset=dataset, version=entry.version, title=entry.title, text=entry.text, url=entry.url)


def _text(value: Any, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text", {field: "not text"})
    if len(value) > limit:
        raise ValidationError(f"{field} is longer than {limit} characters", {field: "too long"})
    if any((ord(c) < 0x20 and c not in "\n\t") or ord(c) == 0x7F for c in value):
        raise ValidationError(f"{field} contains control characters", {field: "control characters"})
    return value.strip()


def _strings(value: Any, field: str, limit: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValidationError(f"{field} must be a list of strings", {field: "not a list"})
    if len(value) > limit:
        raise ValidationError(f"{field} has more than {limit} entries", {field: "too many"})
    if not all(isinstance(v, str) and 0 < len(v) <= 320 for v in value):
        raise ValidationError(f"{field} must hold non-empty strings", {field: "not a list of strings"})
    return [v.strip() for v in value]


class ApplicationService:
    """Applications of the DACs of one directory (see the module docstring)."""

    def __init__(
        self,
        repository: DacRepository,
        directory: Directory,
        roles: Roles,
        grants: GrantService,
        identities: IdentityLookup,
        *,
        clock: Callable[[], float] = time.time,
        notify: Sequence[NoticeHook] = (),
    ) -> None:
        self.repository = repository
        self.directory = directory
        self.roles = roles
        self.grants = grants
        self.identities = identities
        self.clock = clock
        self.notify: list[NoticeHook] = list(notify)

    # ------------------------------------------------------------------ what the form holds

    def settings_of(self, dac_id: str) -> ApplicationSettings:
        for entry in self.directory.settings.committees:
            if entry.id == dac_id:
                return entry.application
        raise NotFound(f"no DAC {dac_id!r}")

    def terms(self, dac_id: str, datasets: Sequence[str]) -> builtins.list[TermsShown]:
        """The terms to accept for ``datasets`` of ``dac_id`` (datasets without terms left out)."""
        settings = self.settings_of(dac_id)
        return [t for t in (terms_for(settings, d) for d in datasets) if t is not None]

    def committee_for(self, datasets: Sequence[str]) -> Committee:
        """The one DAC governing every dataset of ``datasets``; ValidationError otherwise."""
        if not datasets:
            raise ValidationError("name at least one dataset", {"datasets": "required"})
        if len(datasets) > MAX_DATASETS:
            raise ValidationError(f"at most {MAX_DATASETS} datasets", {"datasets": "too many"})
        committees = set()
        for dataset in datasets:
            check_dataset_id(dataset)
            committee = self.directory.governing(dataset)
            if committee is None:
                raise ValidationError(f"no DAC governs {dataset}", {"datasets": "not governed by any DAC"})
            committees.add(committee.id)
        if len(committees) != 1:
            raise ValidationError(
                "one application covers datasets of one DAC; apply to each DAC separately",
                {"datasets": "governed by different DACs"},
            )
        found = self.directory.get(committees.pop())
        assert found is not None
        return found

    # ------------------------------------------------------------------ who is who

    def _now(self) -> int:
        return int(self.clock())

    def is_applicant(self, actor: str | None, app: Application) -> bool:
        """The applicant, or a co-applicant (their recorded e-mail is listed on the application)."""
        if actor is None:
            return False
        if actor == app.applicant:
            return True
        email = email_of(self.identities, actor)
        return bool(email) and email in app.co_applicants

    def is_handler(self, actor: str | None, app: Application) -> bool:
        """A member or chair of the application's DAC, or a site admin."""
        if actor is None:
            return False
        return self.directory.is_admin(actor) or self.roles.role(actor, app.dac) is not None

    def may_decide(self, actor: str | None, app: Application) -> bool:
        return self.is_handler(actor, app) and not self.is_applicant(actor, app)

    def _visible(self, actor: str | None, action: str, application_id: str) -> Application:
        """The application if ``actor`` may see it (applicant side or handler); else Forbidden / NotFound."""
        if actor is None:
            audit.denied(self.repository, self._now(), action, actor, application=str(application_id)[:64])
            raise Forbidden("Log in to see applications.")
        app = self.repository.application(application_id)
        if app is None:
            raise NotFound("no application with that id")
        if not (self.is_applicant(actor, app) or self.is_handler(actor, app)):
            audit.denied(self.repository, self._now(), action, actor, application=app.id, dac=app.dac)
            raise Forbidden("You may not see this application.")
        return app

    def _own(self, actor: str | None, action: str, application_id: str) -> Application:
        """The application if ``actor`` is its applicant (only they change it); else Forbidden."""
        app = self._visible(actor, action, application_id)
        if actor != app.applicant:
            audit.denied(self.repository, self._now(), action, actor, application=app.id, dac=app.dac)
            raise Forbidden("Only the applicant may do this.")
        return app

    def _deciding(self, actor: str | None, action: str, application_id: str) -> Application:
        app = self._visible(actor, action, application_id)
        if not self.is_handler(actor, app):
            audit.denied(self.repository, self._now(), action, actor, application=app.id, dac=app.dac)
            raise Forbidden("Only members of the application's DAC may decide it.")
        if self.is_applicant(actor, app):
            audit.denied(self.repository, self._now(), action, actor, application=app.id, dac=app.dac)
            raise Forbidden("You are an applicant on this application: others must decide it.")
        return app

    # ------------------------------------------------------------------ the applicant's side

    def create(self, actor: str | None, datasets: Sequence[str], answers: Answers | None = None) -> Application:
        """A new draft for ``datasets`` (all of one DAC) with what ``answers`` already holds."""
        if actor is None or self.identities.get(actor) is None:
            audit.denied(self.repository, self._now(), "applications.create", actor)
            raise Forbidden("Log in with a broker account to apply.")
        wanted = _strings(list(datasets) if not isinstance(datasets, str) else datasets, "datasets", MAX_DATASETS)
        unique = list(dict.fromkeys(wanted))
        committee = self.committee_for(unique)
        now = self._now()
        app = Application(
            id=new_application_id(),
            dac=committee.id,
            datasets=tuple(unique),
            applicant=actor,
            state=DRAFT,
            created_at=now,
            updated_at=now,
        )
        app = self._apply_answers(app, answers or Answers())

        def run(tx: DacTx) -> Application:
            tx.applications.put(app)
            tx.audit(self._event("applications.create", actor, app, DRAFT), now)
            return app

        return self.repository.transact(run)

    def check(self, actor: str | None, datasets: Sequence[str], answers: Answers, complete: bool) -> None:
        """Every problem ``answers`` for ``datasets`` would meet (and with ``complete``, a submission too),
        as ONE ValidationError naming each field; nothing is written (a form shows them all at once)."""
        committee = self.committee_for(list(datasets))
        now = self._now()
        probe = Application("check", committee.id, tuple(datasets), actor or "", DRAFT, now, now)
        problems: dict[str, str] = {}
        try:
            probe = self._apply_answers(probe, answers)
        except ValidationError as exc:
            problems.update(exc.fields)
        if complete:
            try:
                self._check_complete(probe)
            except ValidationError as exc:
                problems.update({k: v for k, v in exc.fields.items() if k not in problems})
        if problems:
            raise ValidationError("some answers need attention", problems)

    def update(self, actor: str | None, application_id: str, answers: Answers) -> Application:
        """Change the answers of a draft or a returned application (the applicant only)."""
        self._own(actor, "applications.update", application_id)
        now = self._now()

        def run(tx: DacTx) -> Application:
            current = self._current(tx, application_id)
            if current.state not in EDITABLE:
                raise Conflict(f"a {current.state} application cannot be changed")
            changed = dataclasses.replace(self._apply_answers(current, answers), updated_at=now)
            tx.applications.put(changed)
            tx.audit(self._event("applications.update", actor, changed, current.state), now)
            return changed

        return self.repository.transact(run)

    def submit(self, actor: str | None, application_id: str) -> Application:
        """Send a draft or returned application to the DAC once every required field is filled in.

        Missing or stale answers (terms whose version changed since they were accepted) are a
        ValidationError naming each field. A submission starts a new review: approvals of an
        earlier submission do not count.
        """
        app = self._own(actor, "applications.submit", application_id)
        self._check_complete(app)
        now = self._now()

        def run(tx: DacTx) -> Application:
            current = self._current(tx, application_id)
            if current.state == SUBMITTED:
                return current  # submitted already (a retry)
            if current.state not in EDITABLE:
                raise Conflict(f"a {current.state} application cannot be submitted")
            self._check_complete(current)
            sent = dataclasses.replace(
                current, state=SUBMITTED, submitted_at=now, updated_at=now, approvals=(), approval_ends=()
            )
            tx.applications.put(sent)
            tx.audit(self._event("applications.submit", actor, sent, current.state), now)
            return sent

        sent = self.repository.transact(run)
        if sent.submitted_at == now:
            self._tell(Notice("submitted", sent, actor))
        return sent

    def withdraw(self, actor: str | None, application_id: str, reason: str = "") -> Application:
        """Withdraw an application that is not decided yet (the applicant only)."""
        self._own(actor, "applications.withdraw", application_id)
        reason = check_reason(reason)
        now = self._now()

        def run(tx: DacTx) -> Application:
            current = self._current(tx, application_id)
            if current.state == WITHDRAWN:
                return current
            if current.state not in OPEN:
                raise Conflict(f"a {current.state} application cannot be withdrawn")
            done = dataclasses.replace(current, state=WITHDRAWN, updated_at=now, closed_reason=reason)
            tx.applications.put(done)
            tx.audit(self._event("applications.withdraw", actor, done, current.state, reason=reason), now)
            return done

        return self.repository.transact(run)

    # ------------------------------------------------------------------ the DAC's side

    def approve(self, actor: str | None, application_id: str, end: int, reason: str = "") -> Application:
        """Approve a submitted application until ``end``; the approval that reaches the DAC's
        ``required_approvals`` makes the grants (one per dataset) in the same transaction.

        An approver approves a submission once (a second approval by the same member is
        answered with the application as it is). The grants end at the earliest proposed end.
        """
        app = self._deciding(actor, "applications.approve", application_id)
        assert actor is not None
        reason = check_reason(reason)
        now = self._now()
        end = self.grants.check_end(end, now, now)
        required = self.settings_of(app.dac).required_approvals
        committee = self.directory.get(app.dac)
        if committee is None:
            raise Conflict("the application's DAC no longer exists")
        for dataset in app.datasets:
            governing = self.directory.governing(dataset)
            if governing is None or governing.id != app.dac:
                raise Conflict(f"DAC {app.dac} no longer governs {dataset}")
            self.directory.check_dataset_url(committee, dataset)

        def run(tx: DacTx) -> Application:
            current = self._current(tx, application_id)
            if current.state != SUBMITTED:
                if current.state == APPROVED and actor in current.approvals:
                    return current
                raise Conflict(f"a {current.state} application cannot be approved")
            if actor in current.approvals:
                return current  # this member approved this submission already
            approvals = (*current.approvals, actor)
            ends = (*current.approval_ends, end)
            if len(approvals) < required:
                voted = dataclasses.replace(current, approvals=approvals, approval_ends=ends, updated_at=now)
                tx.applications.put(voted)
                tx.audit(
                    self._event(
                        "applications.approve",
                        actor,
                        voted,
                        SUBMITTED,
                        reason=reason,
                        end=end,
                        approvals=len(approvals),
                        required=required,
                    ),
                    now,
                )
                return voted
            grant_end = min(ends)
            made: list[Grant] = []
            renewed: list[tuple[Grant, int]] = []
            for dataset in current.datasets:
                holder = tx.grant_slot(current.applicant, dataset, current.dac)
                if holder is not None and outstanding(holder, now):
                    # A renewal application: the grant the applicant holds gets the new decision.
                    if holder.end >= grant_end:
                        raise Conflict(f"the applicant holds grant {holder.id} on {dataset} until a later end already")
                    renewed.append((holder, holder.end))
                    made.append(
                        dataclasses.replace(
                            holder,
                            end=grant_end,
                            granted_by=actor,
                            granted_at=now,
                            application=current.id,
                            purpose_codes=current.purpose_codes,
                            reason=reason or f"renewal by application {current.id}"[: audit.MAX_REASON_CHARS],
                        )
                    )
                    continue
                made.append(
                    Grant(
                        id=new_grant_id(),
                        identity_id=current.applicant,
                        dataset=dataset,
                        dac=current.dac,
                        granted_by=actor,
                        granted_at=now,
                        start=now,
                        end=grant_end,
                        reason=reason or f"application {current.id}: {current.title}"[: audit.MAX_REASON_CHARS],
                        application=current.id,
                        purpose_codes=current.purpose_codes,
                    )
                )
            decided = dataclasses.replace(
                current,
                state=APPROVED,
                approvals=approvals,
                approval_ends=ends,
                decided_at=now,
                decided_by=actor,
                decision_reason=reason,
                grants=tuple(g.id for g in made),
                updated_at=now,
            )
            tx.applications.put(decided)
            tx.audit(
                self._event(
                    "applications.approve",
                    actor,
                    decided,
                    SUBMITTED,
                    reason=reason,
                    end=end,
                    approvals=len(approvals),
                    required=required,
                    approvers=list(approvals),
                ),
                now,
            )
            previous_end = {g.id: end for g, end in renewed}
            for grant in made:
                tx.claim_grant(grant)
                fields = audit.grant_fields(grant)
                if grant.id in previous_end:
                    tx.audit(
                        audit.event(
                            "grants.renew",
                            actor,
                            reason=grant.reason,
                            previous_end=previous_end[grant.id],
                            via="application",
                            application=current.id,
                            purpose=list(grant.purpose_codes),
                            **fields,
                        ),
                        now,
                    )
                    continue
                tx.audit(
                    audit.event(
                        "grants.create",
                        actor,
                        reason=grant.reason,
                        via="application",
                        application=current.id,
                        purpose=list(grant.purpose_codes),
                        **fields,
                    ),
                    now,
                )
            return decided

        result = self.repository.transact(run)
        if result.state == APPROVED and result.decided_at == now and result.decided_by == actor:
            for grant_id in result.grants:
                made_grant = self.repository.grant(grant_id)
                if made_grant is not None:
                    self.grants.note(made_grant)
            self._tell(Notice("approved", result, actor, reason))
        return result

    def reject(self, actor: str | None, application_id: str, reason: str) -> Application:
        """Reject a submitted application with a reason the applicant sees."""
        return self._decide(actor, application_id, reason, "reject", REJECTED, "rejected")

    def send_back(self, actor: str | None, application_id: str, reason: str) -> Application:
        """Return a submitted application to the applicant for changes (a reason is required)."""
        return self._decide(actor, application_id, reason, "return", RETURNED, "returned")

    def _decide(
        self, actor: str | None, application_id: str, reason: str, action: str, to: str, notice: str
    ) -> Application:
        self._deciding(actor, f"applications.{action}", application_id)
        reason = check_reason(reason, required=True)
        now = self._now()

        def run(tx: DacTx) -> Application:
            current = self._current(tx, application_id)
            if current.state == to and current.decided_by == actor and current.decision_reason == reason:
                return current  # a retry
            if current.state != SUBMITTED:
                raise Conflict(f"a {current.state} application cannot be decided")
            done = dataclasses.replace(
                current,
                state=to,
                decided_at=now,
                decided_by=actor,
                decision_reason=reason,
                updated_at=now,
                approvals=(),
                approval_ends=(),
            )
            tx.applications.put(done)
            tx.audit(self._event(f"applications.{action}", actor, done, SUBMITTED, reason=reason), now)
            return done

        done = self.repository.transact(run)
        if done.updated_at == now:
            self._tell(Notice(notice, done, actor, reason))
        return done

    def revoke(self, actor: str | None, application_id: str, reason: str) -> Application:
        """Revoke the grants an approved application made and close it, with a reason the researcher sees."""
        app = self._visible(actor, "applications.revoke", application_id)
        if not self.is_handler(actor, app):
            audit.denied(self.repository, self._now(), "applications.revoke", actor, application=app.id)
            raise Forbidden("Only members of the application's DAC may revoke it.")
        reason = check_reason(reason, required=True)
        now = self._now()
        revoked_ids: list[str] = []

        def run(tx: DacTx) -> Application:
            revoked_ids.clear()
            current = self._current(tx, application_id)
            if current.state == CLOSED:
                return current
            if current.state != APPROVED:
                raise Conflict(f"a {current.state} application has no grant to revoke")
            for grant_id in current.grants:
                grant = tx.grants.get(grant_id)
                if grant is None or grant.revoked_at is not None:
                    continue
                revoked = dataclasses.replace(grant, revoked_at=now, revoked_by=actor or "", revoke_reason=reason)
                tx.release_grant(revoked, tx.grant_slot(grant.identity_id, grant.dataset, grant.dac))
                tx.audit(audit.event("grants.revoke", actor, reason=reason, **audit.grant_fields(revoked)), now)
                revoked_ids.append(grant.id)
            closed = dataclasses.replace(current, state=CLOSED, closed_reason=reason, updated_at=now)
            tx.applications.put(closed)
            tx.audit(self._event("applications.revoke", actor, closed, APPROVED, reason=reason), now)
            return closed

        closed = self.repository.transact(run)
        for grant_id in revoked_ids:
            self.grants.revoked(grant_id)
        if revoked_ids or closed.updated_at == now:
            self._tell(Notice("revoked", closed, actor, reason))
        return closed

    # ------------------------------------------------------------------ comments

    def comment(self, actor: str | None, application_id: str, text: str) -> Comment:
        """Add a comment to the application's thread (applicant side or DAC)."""
        app = self._visible(actor, "applications.comment", application_id)
        assert actor is not None
        body = _text(text, "text", MAX_COMMENT_CHARS)
        if not body:
            raise ValidationError("write a comment", {"text": "required"})
        now = self._now()
        side = "applicant" if self.is_applicant(actor, app) else "dac"
        note = Comment(
            id="c-" + secrets.token_urlsafe(12), application=app.id, author=actor, at=now, text=body, side=side
        )

        def run(tx: DacTx) -> Comment:
            current = self._current(tx, application_id)
            tx.comments.put(note)
            tx.audit(self._event("applications.comment", actor, current, current.state, comment=note.id), now)
            return note

        made = self.repository.transact(run)
        self._tell(Notice("comment", app, actor, body if side == "dac" else ""))
        return made

    def comments(self, actor: str | None, application_id: str) -> builtins.list[Comment]:
        app = self._visible(actor, "applications.comments", application_id)
        return self.repository.comments_on(app.id)

    # ------------------------------------------------------------------ reading

    def get(self, actor: str | None, application_id: str) -> Application:
        return self._visible(actor, "applications.get", application_id)

    def mine(self, actor: str | None) -> builtins.list[Application]:
        """The applications ``actor`` made or is a co-applicant on, newest first."""
        if actor is None:
            raise Forbidden("Log in to see your applications.")
        found = {a.id: a for a in self.repository.applications_of(actor)}
        email = email_of(self.identities, actor)
        if email:
            found.update({a.id: a for a in self.repository.applications_with(email)})
        return sorted(found.values(), key=lambda a: (a.created_at, a.id), reverse=True)

    def list(
        self, actor: str | None, dac: str | None = None, state: str | None = None, dataset: str | None = None
    ) -> builtins.list[Application]:
        """The applications of the DACs ``actor`` handles (drafts are the applicant's own), newest first."""
        admin = self.directory.is_admin(actor)
        mine = self.roles.committees_of(actor)
        if actor is None or not (admin or mine):
            audit.denied(self.repository, self._now(), "applications.list", actor)
            raise Forbidden("You may not list applications.")
        if state is not None and state not in APPLICATION_STATES:
            raise ValidationError(f"state must be one of {', '.join(APPLICATION_STATES)}", {"state": "unknown"})
        if dac is not None:
            if self.directory.get(dac) is None:
                raise NotFound(f"no DAC {dac!r}")
            if not admin and dac not in mine:
                audit.denied(self.repository, self._now(), "applications.list", actor, dac=dac)
                raise Forbidden("You may not list the applications of this DAC.")
        scope = [c.id for c in self.directory.committees() if (admin or c.id in mine) and (dac is None or c.id == dac)]
        out = [
            a
            for d in scope
            for a in self.repository.applications_for(d)
            if a.state != DRAFT and (state is None or a.state == state) and (dataset is None or dataset in a.datasets)
        ]
        return sorted(out, key=lambda a: (a.created_at, a.id), reverse=True)

    # ------------------------------------------------------------------ helpers

    def _current(self, tx: DacTx, application_id: str) -> Application:
        current = tx.applications.get(application_id)
        if current is None:
            raise NotFound("no application with that id")
        return current

    def _event(self, name: str, actor: str | None, app: Application, before: str, **extra: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "application": app.id,
            "dac": app.dac,
            "datasets": list(app.datasets),
            "applicant": app.applicant,
            "from": before,
            "to": app.state,
        }
        if len(app.datasets) == 1:
            fields["dataset"] = app.datasets[0]
        return audit.event(name, actor, **fields, **extra)

    def _apply_answers(self, app: Application, answers: Answers) -> Application:
        settings = self.settings_of(app.dac)
        changes: dict[str, Any] = {}
        problems: dict[str, str] = {}

        def take(field: str, fn: Callable[[], Any]) -> None:
            try:
                changes[field] = fn()
            except ValidationError as exc:
                problems.update(exc.fields)

        if answers.title is not None:
            take("title", lambda: _text(answers.title, "title", MAX_TITLE_CHARS))
        if answers.purpose_text is not None:
            take("purpose_text", lambda: _text(answers.purpose_text, "purpose_text", MAX_TEXT_CHARS))
        if answers.institution is not None:
            take("institution", lambda: _text(answers.institution, "institution", MAX_TITLE_CHARS))
        if answers.purpose_codes is not None:
            take("purpose_codes", lambda: self._codes(settings, answers.purpose_codes))
        if answers.co_applicants is not None:
            take("co_applicants", lambda: self._emails(app, answers.co_applicants))
        if answers.accepted_terms is not None:
            take("accepted_terms", lambda: self._accepted(settings, app, answers.accepted_terms))
        if problems:
            raise ValidationError("some answers are not acceptable", problems)
        return dataclasses.replace(app, **changes)

    @staticmethod
    def _codes(settings: ApplicationSettings, value: Any) -> tuple[str, ...]:
        codes = list(dict.fromkeys(_strings(value, "purpose_codes", 10)))
        unknown = [c for c in codes if c not in settings.purpose_codes]
        if unknown:
            raise ValidationError("unknown purpose code", {"purpose_codes": f"not offered: {', '.join(unknown)[:200]}"})
        return tuple(codes)

    def _emails(self, app: Application, value: Any) -> tuple[str, ...]:
        emails = [e.lower() for e in _strings(value, "co_applicants", MAX_CO_APPLICANTS) if e]
        bad = [e for e in emails if not EMAIL.fullmatch(e)]
        if bad:
            raise ValidationError("not an e-mail address", {"co_applicants": f"not an e-mail address: {bad[0][:80]}"})
        if email_of(self.identities, app.applicant) in emails:
            raise ValidationError("you are the applicant", {"co_applicants": "lists the applicant"})
        return tuple(dict.fromkeys(emails))

    @staticmethod
    def _accepted(settings: ApplicationSettings, app: Application, value: Any) -> tuple[str, ...]:
        tokens = list(dict.fromkeys(_strings(value, "accepted_terms", MAX_DATASETS)))
        offered = {t.token for t in (terms_for(settings, d) for d in app.datasets) if t is not None}
        unknown = [t for t in tokens if t not in offered]
        if unknown:
            raise ValidationError(
                "these terms are not the current terms of the datasets",
                {"accepted_terms": f"not current: {', '.join(unknown)[:200]}"},
            )
        return tuple(tokens)

    def _check_complete(self, app: Application) -> None:
        settings = self.settings_of(app.dac)
        missing: dict[str, str] = {}
        for field in settings.fields:
            if not field.required:
                continue
            if field.name == "title" and not app.title:
                missing["title"] = "required"
            elif field.name == "institution" and not app.institution:
                missing["institution"] = "required"
            elif field.name == "purpose":
                if not app.purpose_codes:
                    missing["purpose_codes"] = "pick at least one purpose"
                if not app.purpose_text:
                    missing["purpose_text"] = "required"
            elif field.name == "co_applicants" and not app.co_applicants:
                missing["co_applicants"] = "required"
        if any(f.name == "terms" for f in settings.fields):
            wanted = {t.token for t in (terms_for(settings, d) for d in app.datasets) if t is not None}
            if not wanted <= set(app.accepted_terms):
                missing["accepted_terms"] = "accept the current terms of every dataset"
        if missing:
            raise ValidationError("the application is not complete", missing)

    def _tell(self, notice: Notice) -> None:
        for hook in self.notify:
            try:
                hook(notice)
            except Exception:  # a notification never undoes or blocks a decision
                log.exception("notification hook failed for application %s", notice.application.id)


def application_to_json(app: Application) -> dict[str, Any]:
    """An application as the API and the CLI show it."""
    return {
        "id": app.id,
        "dac": app.dac,
        "datasets": list(app.datasets),
        "applicant": app.applicant,
        "state": app.state,
        "created_at": app.created_at,
        "updated_at": app.updated_at,
        "title": app.title,
        "purpose_codes": list(app.purpose_codes),
        "purpose_text": app.purpose_text,
        "institution": app.institution,
        "co_applicants": list(app.co_applicants),
        "accepted_terms": list(app.accepted_terms),
        "submitted_at": app.submitted_at,
        "approvals": list(app.approvals),
        "decided_at": app.decided_at,
        "decided_by": app.decided_by,
        "decision_reason": app.decision_reason,
        "grants": list(app.grants),
        "closed_reason": app.closed_reason,
    }


def comment_to_json(comment: Comment) -> dict[str, Any]:
    return {"id": comment.id, "author": comment.author, "at": comment.at, "text": comment.text, "side": comment.side}
