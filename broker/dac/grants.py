"""DAC grants: grant, renew, revoke, list and bulk import, with authorization and audit.

Who may do what (THREAT-MODEL GA-12, UI-08), decided before anything is read or written:

- a DAC ``member`` or ``chair`` acts on the datasets their own DAC governs (grant, renew,
  revoke, list); a site admin on every dataset any DAC governs; anyone else, anonymous or a
  plain researcher, on nothing. A refusal raises :class:`Forbidden`, is written to the audit
  log as ``dac.denied``, and changes nothing.
- a researcher lists their own grants (:meth:`GrantService.grants_of`).

What the caller decides and what the broker derives (GA-13, mass assignment): the caller
names the researcher, the dataset, the start and end and a reason; the DAC, ``granted_by``
(the authenticated actor) and ``granted_at`` (now: the visa's ``asserted``) are derived and
never taken from input. The end is at most ``dac.max_grant_days`` away.

Every change (grant, renew, revoke, import) is ONE store transaction that writes the
grant(s), the (researcher, dataset, DAC) slot record and the audit event(s) together, or
nothing (:mod:`broker.dac.repository`, :mod:`broker.dac.audit`). So:

- at most one outstanding grant (live, or starting later) per researcher, dataset and DAC:
  the slot is claimed inside the transaction, never checked by reading first;
- a revocation is never undone by a concurrent renewal (renew re-reads the grant in its own
  transaction and refuses a revoked one);
- an acknowledged change always has its audit record, and a change the caller saw fail
  (store unavailable) either happened whole or not at all;
- retries converge: a grant or import retried after a lost reply answers the grants already
  made, a renewal already applied answers the grant, and a revoke of a revoked grant answers
  the grant (see each method). The caller may retry any of them after a store error.

A revocation also calls the ``on_revoke(record_id)`` hooks so this process's caches drop what
they hold (GA-14); other processes learn of it from the ``grants.revoke`` audit event.

A grant belongs to the DAC that governed its dataset when it was made; it is acted on, and
minted into a visa, only while that DAC still governs the dataset (a configuration change
never hands a grant to another authority).
"""

from __future__ import annotations

import builtins
import csv
import dataclasses
import io
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from broker.dac import audit
from broker.dac.committees import ROLE_CHAIR, Committee, Directory, check_dataset_id
from broker.dac.errors import Conflict, Forbidden, ImportRejected, LineError, NotFound, ValidationError
from broker.dac.identities import IdentityLookup
from broker.dac.members import Roles
from broker.dac.records import APPROVED, CLOSED, Grant
from broker.dac.repository import DacRepository, DacTx
from broker.dac.settings import RESERVED_PREFIX

log = logging.getLogger("broker.dac")

MAX_IMPORT_LINES = 10_000
MAX_IMPORT_BYTES = 2 * 1024 * 1024
CSV_COLUMNS = ("identity", "dataset", "end")  # required; optional: start, reason
CSV_OPTIONAL = ("start", "reason")
MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z


def is_dataset_grant(grant: Grant) -> bool:
    """True for a DAC's grant on a real dataset (not a first-release membership or registered-access
    record kept as a grant under the reserved prefix, until ``ga4gh-broker dac migrate`` moves it)."""
    return not grant.dataset.startswith(RESERVED_PREFIX)


def new_grant_id() -> str:
    """128 random bits, URL-safe, with no ``.`` (minted visa ids append ``.<random>``)."""
    return secrets.token_urlsafe(16)


def parse_time(value: Any, field: str) -> int:
    """Epoch seconds from an int, a digit string, an ISO 8601 date (UTC midnight) or a datetime.

    A datetime without a zone is taken as UTC. Anything else is a :class:`ValidationError`
    naming ``field``.
    """
    if isinstance(value, bool):
        raise ValidationError(f"{field} must be a time", {field: "not a time"})
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 12:
        seconds = int(value.strip())
    elif isinstance(value, str) and 0 < len(value) <= 40:
        text = value.strip()
        try:
            if len(text) == 10:
                parsed = datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
        except ValueError:
            raise ValidationError(f"{field} is not an ISO 8601 date or time", {field: "not a date"}) from None
        seconds = int(parsed.timestamp())
    else:
        raise ValidationError(f"{field} must be an ISO 8601 date or epoch seconds", {field: "not a time"})
    if not 0 <= seconds <= MAX_TIME:
        raise ValidationError(f"{field} is out of range", {field: "out of range"})
    return seconds


def check_reason(reason: Any, field: str = "reason", required: bool = False) -> str:
    """A reason is text of at most 1000 characters with no control characters but newline and tab."""
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise ValidationError(f"{field} must be text", {field: "not text"})
    if required and not reason.strip():
        raise ValidationError(f"{field} is required", {field: "required"})
    if len(reason) > audit.MAX_REASON_CHARS:
        raise ValidationError(f"{field} is longer than {audit.MAX_REASON_CHARS} characters", {field: "too long"})
    if any((ord(c) < 0x20 and c not in "\n\t") or ord(c) == 0x7F for c in reason):
        raise ValidationError(f"{field} contains control characters", {field: "control characters"})
    return reason


@dataclass(frozen=True)
class GrantFilter:
    """What :meth:`GrantService.list` selects; every given member must hold."""

    dataset: str | None = None
    dac: str | None = None
    identity: str | None = None
    live: bool | None = None  # True: live now; False: not live (revoked, ended or not started)
    expiring_within_days: float | None = None  # live and ending within this many days


@dataclass(frozen=True)
class GrantRequest:
    """One grant to make, as a caller asks for it (the broker derives everything else)."""

    identity: str
    dataset: str
    end: int
    start: int | None = None
    reason: str = ""


#: Called with the id of a record that stopped being in force (its return value is ignored).
RevokeHook = Callable[[str], object]


def outstanding(grant: Grant, now: int) -> bool:
    """Whether ``grant`` still holds its slot at ``now``: not revoked and not ended (live, or starting later)."""
    return grant.revoked_at is None and grant.end > now


def same_decision(held: Grant, wanted: Grant, explicit_start: bool) -> bool:
    """Whether ``held`` is the grant ``wanted`` asks for again (the retry of a request whose reply was lost).

    Same researcher, dataset, DAC, end, reason and actor; the start too when the request named
    one (without one, the start is "now" and differs between the attempts).
    """
    return (
        held.identity_id == wanted.identity_id
        and held.dataset == wanted.dataset
        and held.dac == wanted.dac
        and held.end == wanted.end
        and held.reason == wanted.reason
        and held.granted_by == wanted.granted_by
        and (not explicit_start or held.start == wanted.start)
    )


def _held_message(holder: Grant) -> str:
    return f"this researcher already holds grant {holder.id} on this dataset; renew it instead"


class GrantService:
    """Grants of the DACs of one directory, each change one store transaction (see the module docstring)."""

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
        self._max_seconds = int(directory.settings.max_grant_days * 86400)
        self._audit_seq = 0  # how far the dataset index has read the audit log
        self._seen: dict[str, set[str]] = {}  # dac id -> datasets that ever had a grant
        self._index_lock = threading.Lock()

    # ------------------------------------------------------------------ authorization

    def _now(self) -> int:
        return int(self.clock())

    def _may_act(self, actor: str | None, committee: Committee | None) -> bool:
        if actor is None or committee is None:
            return False
        return self.directory.is_admin(actor) or self.roles.role(actor, committee.id) is not None

    def _committee_for(self, actor: str | None, action: str, dataset: str, **target: Any) -> Committee:
        """The DAC governing ``dataset`` if ``actor`` may act on it; else Forbidden (audited)."""
        committee = self.directory.governing(dataset)
        if not self._may_act(actor, committee):
            audit.denied(self.repository, self._now(), action, actor, dataset=dataset, **target)
            if committee is None and self.directory.is_admin(actor):
                raise ValidationError("no DAC governs this dataset", {"dataset": "not governed by any DAC"})
            raise Forbidden("You may not act on this dataset.")
        assert committee is not None
        return committee

    def _may_grant_directly(
        self, actor: str | None, committee: Committee, action: str, dataset: str, identity: object
    ) -> None:
        """A direct grant (outside an application) is for the DAC's chairs and site admins, never to themselves.

        A member decides access through applications that others also see (four eyes when the
        DAC asks for it); a direct grant skips that, so only a chair or an admin makes one, it
        is audited like every grant, and nobody grants themselves.
        """
        target = str(identity)[:200]
        if actor is not None and identity == actor:
            audit.denied(self.repository, self._now(), action, actor, dataset=dataset, identity=target, why="self")
            raise Forbidden("Nobody may grant themselves access; apply, and other members decide.")
        if not (self.directory.is_admin(actor) or self.roles.role(actor, committee.id) == ROLE_CHAIR):
            audit.denied(self.repository, self._now(), action, actor, dataset=dataset, identity=target, why="role")
            raise Forbidden("Only a chair or a site admin grants directly; members decide applications.")

    def _owned_grant(self, actor: str | None, action: str, grant_id: str) -> tuple[Grant, Committee]:
        """The grant ``grant_id`` if ``actor`` may act on it (its DAC still governs its dataset)."""
        if actor is None or not (self.directory.is_admin(actor) or self.roles.committees_of(actor)):
            audit.denied(self.repository, self._now(), action, actor, grant=str(grant_id)[:200])
            raise Forbidden("You may not act on grants.")
        grant = self.repository.grant(grant_id)
        if grant is None or not is_dataset_grant(grant):
            raise NotFound("no grant with that id")
        committee = self.directory.governing(grant.dataset)
        if committee is None or committee.id != grant.dac or not self._may_act(actor, committee):
            audit.denied(self.repository, self._now(), action, actor, grant=grant.id, dataset=grant.dataset)
            raise Forbidden("You may not act on this grant.")
        return grant, committee

    def revoked(self, record_id: str) -> None:
        """Run the ``on_revoke`` hooks for ``record_id`` (after a revocation committed elsewhere in the area)."""
        self._revoked(record_id)

    def note(self, grant: Grant) -> None:
        """Remember that ``grant``'s DAC has a grant on its dataset (for listing pattern-governed datasets)."""
        self._note(grant)

    def check_end(self, end: Any, start: int, now: int) -> int:
        """``end`` as epoch seconds if it is after ``start`` and ``now`` and within ``max_grant_days``."""
        return self._check_end(end, start, now)

    def _revoked(self, record_id: str) -> None:
        """Tell this process's hooks (its caches) that ``record_id`` is revoked; a failing hook is logged."""
        for hook in self.on_revoke:
            try:
                hook(record_id)
            except Exception:  # the revocation stands; caches still end at the visa's short exp
                log.exception("revocation hook failed for grant %s", record_id)

    # ------------------------------------------------------------------ changes

    def grant(self, actor: str | None, request: GrantRequest) -> Grant:
        """Make one grant; returns the stored record.

        One transaction reads the (researcher, dataset, DAC) slot and writes the grant, the slot
        and the ``grants.create`` event together, or nothing. When the slot is held by an
        outstanding grant (live, or starting later) the answer is :class:`Conflict`, except for
        a retry: if that grant is the same decision (:func:`same_decision`: same researcher,
        dataset, DAC, end, reason and actor) it is the answer and nothing is written, so a
        request retried after a lost reply converges on one grant and one audit record.
        """
        dataset = check_dataset_id(request.dataset)
        committee = self._committee_for(actor, "grants.create", dataset, identity=str(request.identity)[:200])
        self._may_grant_directly(actor, committee, "grants.create", dataset, request.identity)
        now = self._now()
        grant = self._build(actor, committee, request, now)
        explicit_start = request.start is not None

        def run(tx: DacTx) -> Grant:
            holder = tx.grant_slot(grant.identity_id, grant.dataset, grant.dac)
            if holder is not None and outstanding(holder, now):
                if same_decision(holder, grant, explicit_start):
                    return holder
                raise Conflict(_held_message(holder))
            tx.claim_grant(grant)
            tx.audit(audit.event("grants.create", actor, reason=grant.reason, **audit.grant_fields(grant)), now)
            return grant

        made = self.repository.transact(run)
        self._note(made)
        return made

    def renew(self, actor: str | None, grant_id: str, end: int, reason: str = "") -> Grant:
        """Give a live or ended (not revoked) grant a new end; a renewal is a new decision (``granted_at`` = now).

        One transaction re-reads the grant and writes the renewal, its slot and the
        ``grants.renew`` event: a grant revoked at any moment before that transaction commits
        is never renewed (:class:`Conflict`), so a concurrent revocation cannot be lost. An
        ended grant whose slot a newer grant took is not renewed either (renew that one).
        A renewal the grant already carries (same end, by the same actor, with the same
        reason) is answered with the grant and writes nothing: a retry converges.
        """
        grant, _ = self._owned_grant(actor, "grants.renew", grant_id)
        if grant.identity_id == actor:
            audit.denied(self.repository, self._now(), "grants.renew", actor, grant=grant.id, why="self")
            raise Forbidden("Nobody may renew their own grant; others on the DAC decide.")
        if grant.revoked_at is not None:
            raise Conflict("a revoked grant cannot be renewed; make a new grant")
        now = self._now()
        reason = check_reason(reason)
        end = self._check_end(end, max(grant.start, now), now)

        def run(tx: DacTx) -> Grant:
            current = tx.grants.get(grant.id)
            if current is None:
                raise NotFound("no grant with that id")
            if current.revoked_at is not None:
                raise Conflict("a revoked grant cannot be renewed; make a new grant")
            new_reason = reason or current.reason
            if current.end == end and current.granted_by == (actor or "") and current.reason == new_reason:
                return current  # this renewal is already the grant's last decision
            holder = tx.grant_slot(current.identity_id, current.dataset, current.dac)
            if holder is not None and holder.id != current.id and outstanding(holder, now):
                raise Conflict(f"this researcher now holds grant {holder.id} on this dataset; renew that one")
            renewed = dataclasses.replace(current, end=end, granted_by=actor or "", granted_at=now, reason=new_reason)
            tx.claim_grant(renewed)
            fields = audit.grant_fields(renewed)
            tx.audit(audit.event("grants.renew", actor, reason=reason, previous_end=current.end, **fields), now)
            return renewed

        return self.repository.transact(run)

    def revoke(self, actor: str | None, grant_id: str, reason: str) -> Grant:
        """Revoke a grant with a reason (required).

        One transaction writes the revocation, frees the slot and appends the ``grants.revoke``
        event (which carries the revocation to every process's RevocationWatcher). Revoking a
        grant that is already revoked succeeds and answers the grant as it is (its first
        revoker and reason; nothing is written, so the log holds the revocation once), and the
        ``on_revoke`` hooks run again: a revoke retried after a lost reply or a store error
        still evicts this process's caches, instead of answering 409 and evicting nothing.
        """
        grant, _ = self._owned_grant(actor, "grants.revoke", grant_id)
        reason = check_reason(reason, required=True)
        now = self._now()

        def run(tx: DacTx) -> Grant:
            current = tx.grants.get(grant.id)
            if current is None:
                raise NotFound("no grant with that id")
            if current.revoked_at is not None:
                return current  # revoked already (a retry): the first revocation stands, nothing is written
            revoked = dataclasses.replace(current, revoked_at=now, revoked_by=actor or "", revoke_reason=reason)
            tx.release_grant(revoked, tx.grant_slot(current.identity_id, current.dataset, current.dac))
            tx.audit(audit.event("grants.revoke", actor, reason=reason, **audit.grant_fields(revoked)), now)
            if current.application:
                _close_application(tx, current.application, revoked, actor, reason, now)
            return revoked

        revoked = self.repository.transact(run)
        self._revoked(revoked.id)
        return revoked

    def import_csv(self, actor: str | None, text: str) -> list[Grant]:
        """Import grants from CSV, all or nothing, in ONE store transaction.

        Header line required: ``identity,dataset,end`` and optionally ``start``, ``reason``
        (times as ISO 8601 dates/datetimes or epoch seconds). Every line is checked first
        (syntax, authorization, identity, dataset, times, duplicates within the file and
        against outstanding grants); with any problem, :class:`ImportRejected` lists each bad
        line by its line number and nothing is written. Then one transaction checks every
        slot again and writes every grant, its slot, the ``grants.import`` event and one
        ``grants.create`` per grant, or nothing at all (a store failure leaves no part behind).

        A line that is the same decision as the grant holding its slot (see :meth:`grant`)
        is answered with that grant and not written again, so an import retried after a lost
        reply answers the same grants and the log holds each once; when every line is such a
        line, nothing is written.
        """
        if actor is None or not (self.directory.is_admin(actor) or self.roles.committees_of(actor)):
            audit.denied(self.repository, self._now(), "grants.import", actor)
            raise Forbidden("You may not import grants.")
        if len(text.encode("utf-8", "surrogatepass")) > MAX_IMPORT_BYTES:
            raise ValidationError(f"the file is larger than {MAX_IMPORT_BYTES} bytes", {"file": "too large"})
        now = self._now()
        errors: list[LineError] = []
        planned: list[tuple[int, Grant, bool]] = []
        seen: dict[tuple[str, str], int] = {}
        rows = list(_csv_rows(text, errors))
        if len(rows) > MAX_IMPORT_LINES:
            raise ValidationError(f"more than {MAX_IMPORT_LINES} lines", {"file": "too many lines"})
        for line, row in rows:
            try:
                request = GrantRequest(
                    identity=row.get("identity", ""),
                    dataset=row.get("dataset", ""),
                    end=parse_time(row.get("end", ""), "end"),
                    start=parse_time(row["start"], "start") if row.get("start") else None,
                    reason=row.get("reason") or "",
                )
                dataset = check_dataset_id(request.dataset)
                committee = self.directory.governing(dataset)
                if not self._may_act(actor, committee):
                    raise Forbidden("you may not grant access to this dataset")
                assert committee is not None
                if request.identity == actor:
                    raise Forbidden("you may not grant yourself access")
                if not (self.directory.is_admin(actor) or self.roles.role(actor, committee.id) == ROLE_CHAIR):
                    raise Forbidden("you may not grant directly on this dataset (chairs and admins only)")
                grant = self._build(actor, committee, request, now)
                key = (grant.identity_id, grant.dataset)
                if key in seen:
                    raise Conflict(f"the same identity and dataset as line {seen[key]}")
                seen[key] = line
                self._refuse_held(grant, request.start is not None, now)  # for the report; the transaction decides
                planned.append((line, grant, request.start is not None))
            except (ValidationError, Forbidden, Conflict) as exc:
                errors.append(LineError(line, _line_message(exc)))
        if errors:
            errors.sort(key=lambda e: e.line)
            refused = [e.line for e in errors if e.message.startswith("you may not")]
            if refused:  # GA-12: a file naming datasets of another DAC is refused as a whole (403)
                audit.denied(self.repository, now, "grants.import", actor, lines=refused[:100])
                raise Forbidden(
                    "The file names datasets you may not act on; nothing was imported.",
                    {"lines": [e.to_json() for e in errors]},
                )
            raise ImportRejected(errors)
        if not planned:
            raise ValidationError("the file holds no grants", {"file": "empty"})

        def run(tx: DacTx) -> list[Grant]:
            answer: list[Grant] = []
            created: list[Grant] = []
            held: list[LineError] = []
            for line, grant, explicit_start in planned:
                holder = tx.grant_slot(grant.identity_id, grant.dataset, grant.dac)
                if holder is not None and outstanding(holder, now):
                    if same_decision(holder, grant, explicit_start):
                        answer.append(holder)
                    else:
                        held.append(LineError(line, _held_message(holder)))
                    continue
                answer.append(grant)
                created.append(grant)
            if held:
                raise ImportRejected(held)
            if created:
                for grant in created:
                    tx.claim_grant(grant)
                ids = [g.id for g in created]
                tx.audit(audit.event("grants.import", actor, count=len(created), grants=ids[:1000]), now)
                for grant in created:
                    fields = audit.grant_fields(grant)
                    tx.audit(audit.event("grants.create", actor, reason=grant.reason, via="import", **fields), now)
            return answer

        made = self.repository.transact(run)
        for grant in made:
            self._note(grant)
        return made

    # ------------------------------------------------------------------ reading

    def get(self, actor: str | None, grant_id: str) -> Grant:
        grant, _ = self._owned_grant(actor, "grants.get", grant_id)
        return grant

    def list(self, actor: str | None, flt: GrantFilter | None = None) -> list[Grant]:
        """The grants ``actor`` may see that match ``flt``, oldest decision first."""
        flt = flt or GrantFilter()
        now = self._now()
        admin = self.directory.is_admin(actor)
        mine = set(self.roles.committees_of(actor))
        if actor is None or not (admin or mine):
            audit.denied(self.repository, now, "grants.list", actor)
            raise Forbidden("You may not list grants.")
        if flt.dac is not None:
            if self.directory.get(flt.dac) is None and admin:
                raise NotFound(f"no DAC {flt.dac!r}")
            if not admin and flt.dac not in mine:
                audit.denied(self.repository, now, "grants.list", actor, dac=flt.dac)
                raise Forbidden("You may not list the grants of this DAC.")
        if flt.dataset is not None:
            check_dataset_id(flt.dataset)
            committee = self.directory.governing(flt.dataset)
            if not self._may_act(actor, committee):
                audit.denied(self.repository, now, "grants.list", actor, dataset=flt.dataset)
                raise Forbidden("You may not list the grants of this dataset.")
            candidates = self.repository.grants_for_dataset(flt.dataset)
        else:
            scope = [c for c in self.directory.committees() if admin or c.id in mine]
            if flt.dac is not None:
                scope = [c for c in scope if c.id == flt.dac]
            candidates = [
                g for c in scope for d in sorted(self._datasets_of(c)) for g in self.repository.grants_for_dataset(d)
            ]
        out = []
        for grant in candidates:
            committee = self.directory.governing(grant.dataset)
            if committee is None or committee.id != grant.dac or not is_dataset_grant(grant):
                continue
            if not admin and committee.id not in mine:
                continue
            if _matches(grant, flt, now):
                out.append(grant)
        return sorted(out, key=lambda g: (g.granted_at, g.id))

    def grants_of(self, actor: str | None, identity_id: str) -> builtins.list[Grant]:
        """A researcher's own grants (or anyone's, for a site admin)."""
        if actor is None or (actor != identity_id and not self.directory.is_admin(actor)):
            audit.denied(self.repository, self._now(), "grants.of", actor, identity=str(identity_id)[:200])
            raise Forbidden("You may only see your own grants.")
        return [g for g in self.repository.grants_of(identity_id) if is_dataset_grant(g)]

    def audit_trail(self, actor: str | None, dataset: str, limit: int = 500) -> builtins.list[dict[str, Any]]:
        """The audit records naming ``dataset`` (grants, revocations, accesses), newest first.

        For members of the DAC governing it and site admins. Each item is ``{"seq", "at",
        "event"}`` as the hash-chained log holds it.
        """
        check_dataset_id(dataset)
        self._committee_for(actor, "audit.read", dataset)
        found: builtins.list[dict[str, Any]] = []
        for rec in self.repository.audit_records(0):
            if rec.event.get("dataset") == dataset:
                found.append({"seq": rec.seq, "at": rec.at, "event": rec.event})
        return list(reversed(found))[: max(1, limit)]

    def live_grants(self, identity_id: str) -> builtins.list[tuple[Grant, Committee]]:
        """Every live grant of ``identity_id`` whose DAC still governs its dataset (for minting; no actor)."""
        now = self._now()
        out = []
        for grant in self.repository.grants_of(identity_id):
            if not is_dataset_grant(grant) or not grant.live(now):
                continue
            committee = self.directory.governing(grant.dataset)
            if committee is not None and committee.id == grant.dac:
                out.append((grant, committee))
        return out

    def revoked_grants(self, identity_id: str) -> builtins.list[tuple[Grant, Committee]]:
        """Revoked grants of ``identity_id`` with no live grant for the same dataset and DAC since
        (for deny reasons: "your grant was revoked"; no actor, nothing about who revoked or why)."""
        now = self._now()
        held = self.repository.grants_of(identity_id)
        live = {(g.dataset, g.dac) for g in held if g.live(now)}
        out = []
        for grant in held:
            if grant.revoked_at is None or not is_dataset_grant(grant) or (grant.dataset, grant.dac) in live:
                continue
            committee = self.directory.governing(grant.dataset)
            if committee is not None and committee.id == grant.dac:
                out.append((grant, committee))
        return out

    # ------------------------------------------------------------------ helpers

    def _build(self, actor: str | None, committee: Committee, request: GrantRequest, now: int) -> Grant:
        fields: dict[str, str] = {}
        identity = request.identity
        if not isinstance(identity, str) or not identity or len(identity) > 200:
            fields["identity"] = "required"
        elif self.identities.get(identity) is None:
            fields["identity"] = "unknown identity"
        if fields:
            raise ValidationError("no broker identity with that id", fields)
        self.directory.check_dataset_url(committee, request.dataset)
        reason = check_reason(request.reason)
        start = now if request.start is None else parse_time(request.start, "start")
        end = self._check_end(parse_time(request.end, "end"), start, now)
        return Grant(
            id=new_grant_id(),
            identity_id=identity,
            dataset=request.dataset,
            dac=committee.id,
            granted_by=actor or "",
            granted_at=now,
            start=start,
            end=end,
            reason=reason,
        )

    def _check_end(self, end: Any, start: int, now: int) -> int:
        end = parse_time(end, "end")
        if end <= start or end <= now:
            raise ValidationError("end must be after the start and in the future", {"end": "not after start"})
        if end - now > self._max_seconds:
            raise ValidationError(
                f"end is more than {self.directory.settings.max_grant_days:g} days away",
                {"end": "beyond the longest grant allowed"},
            )
        return int(end)

    def _refuse_held(self, grant: Grant, explicit_start: bool, now: int) -> None:
        """Conflict when an outstanding, different grant holds ``grant``'s slot (a read for the import report)."""
        holder_id = self.repository.grant_slot_holder(grant.identity_id, grant.dataset, grant.dac)
        holder = self.repository.grant(holder_id) if holder_id is not None else None
        if holder is not None and outstanding(holder, now) and not same_decision(holder, grant, explicit_start):
            raise Conflict(_held_message(holder))

    def _note(self, grant: Grant) -> None:
        with self._index_lock:
            self._seen.setdefault(grant.dac, set()).add(grant.dataset)

    def _datasets_of(self, committee: Committee) -> set[str]:
        """Datasets of ``committee`` that may hold grants: its exact ids, and every dataset a
        grant was ever made on under it (read from the audit log, incrementally), since
        pattern-governed datasets cannot be enumerated from the settings."""
        with self._index_lock:
            for rec in self.repository.audit_records(self._audit_seq):
                self._audit_seq = rec.seq
                event = rec.event
                if (
                    event.get("event") == "grants.create"
                    and isinstance(event.get("dac"), str)
                    and isinstance(event.get("dataset"), str)
                ):
                    self._seen.setdefault(event["dac"], set()).add(event["dataset"])
            return set(committee.datasets) | self._seen.get(committee.id, set())


def _close_application(
    tx: DacTx, application_id: str, revoked: Grant, actor: str | None, reason: str, now: int
) -> None:
    """Close the approved application that made ``revoked`` once none of its grants is left unrevoked."""
    app = tx.applications.get(application_id)
    if app is None or app.state != APPROVED:
        return
    for grant_id in app.grants:
        other = revoked if grant_id == revoked.id else tx.grants.get(grant_id)
        if other is not None and other.revoked_at is None:
            return
    closed = dataclasses.replace(app, state=CLOSED, closed_reason=reason, updated_at=now)
    tx.applications.put(closed)
    tx.audit(
        audit.event(
            "applications.revoke",
            actor,
            application=app.id,
            dac=app.dac,
            datasets=list(app.datasets),
            applicant=app.applicant,
            reason=reason,
            via="grant",
            grant=revoked.id,
            **{"from": APPROVED, "to": CLOSED},
        ),
        now,
    )


def grant_to_json(grant: Grant, now: int | None = None) -> dict[str, Any]:
    """A grant as the CLI and the API show it (``live`` at ``now``)."""
    at = int(time.time()) if now is None else now
    return {
        "id": grant.id,
        "identity": grant.identity_id,
        "dataset": grant.dataset,
        "dac": grant.dac,
        "granted_by": grant.granted_by,
        "granted_at": grant.granted_at,
        "start": grant.start,
        "end": grant.end,
        "reason": grant.reason,
        "revoked_at": grant.revoked_at,
        "revoked_by": grant.revoked_by,
        "revoke_reason": grant.revoke_reason,
        "application": grant.application,
        "purpose_codes": list(grant.purpose_codes),
        "live": grant.live(at),
    }


def _matches(grant: Grant, flt: GrantFilter, now: int) -> bool:
    if flt.dataset is not None and grant.dataset != flt.dataset:
        return False
    if flt.dac is not None and grant.dac != flt.dac:
        return False
    if flt.identity is not None and grant.identity_id != flt.identity:
        return False
    if flt.live is not None and grant.live(now) != flt.live:
        return False
    horizon = flt.expiring_within_days
    return horizon is None or (grant.live(now) and grant.end <= now + horizon * 86400)


def _line_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.fields:
        return "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
    return str(exc)


def _csv_rows(text: str, errors: list[LineError]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for every data line; header or shape problems go to ``errors``."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        errors.append(LineError(1, f"unreadable CSV: {exc}"))
        return
    if header is None:
        errors.append(LineError(1, "the file is empty (expected a header line)"))
        return
    names = [h.strip().lower() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in names]
    unknown = [n for n in names if n not in CSV_COLUMNS + CSV_OPTIONAL]
    if missing or unknown or len(set(names)) != len(names):
        what = (
            f"missing column(s) {', '.join(missing)}"
            if missing
            else f"unknown column(s) {', '.join(unknown)}"
            if unknown
            else "a column is named twice"
        )
        errors.append(LineError(1, f"header: {what} (expected identity,dataset,end[,start][,reason])"))
        return
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.append(LineError(reader.line_num, f"unreadable CSV: {exc}"))
            return
        line = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(names):
            errors.append(LineError(line, f"expected {len(names)} fields, found {len(values)}"))
            continue
        yield line, {n: v.strip() if n != "reason" else v for n, v in zip(names, values, strict=True)}
