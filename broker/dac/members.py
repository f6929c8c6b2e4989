"""DAC membership: who is member or chair of which DAC, and managing it (``dac members``).

Members come from two places: the settings file (``dac.committees[].members``), which only
an edit of the file changes, and :class:`~broker.dac.records.Membership` records in the store,
which a DAC's chair or a site admin adds and removes. A member declared in the settings keeps
the declared role.

Authorization: listing the members of a DAC is for its members and chairs and for site
admins; adding, changing a role and removing is for its chairs and for site admins. Anything
else raises :class:`Forbidden`, is audited as ``dac.denied`` and changes nothing.

Every change (add, role change, remove) is one store transaction that writes the membership
and its ``members.add`` / ``members.remove`` event together. One record per (DAC, identity)
(its key), so two concurrent adds cannot seat a person twice. Retries converge: adding a
member who already holds that role, or removing one already removed, answers as if done and
writes nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from broker.dac import audit
from broker.dac.committees import ROLE_CHAIR, ROLES, Committee, Directory
from broker.dac.errors import Forbidden, NotFound, ValidationError
from broker.dac.identities import IdentityLookup
from broker.dac.records import Membership
from broker.dac.repository import DacRepository, DacTx, membership_key


@dataclass(frozen=True)
class Member:
    """A member of one DAC as listed: where the membership comes from (settings or store)."""

    dac: str
    identity_id: str
    role: str
    origin: str  # "settings" | "store"
    added_by: str | None = None
    added_at: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "dac": self.dac,
            "identity": self.identity_id,
            "role": self.role,
            "origin": self.origin,
            "added_by": self.added_by,
            "added_at": self.added_at,
        }


def _stored(m: Membership) -> Member:
    return Member(m.dac, m.identity_id, m.role, "store", m.added_by, m.added_at)


class Roles:
    """Answers "what role does this identity hold on that DAC?" from the settings and the store."""

    def __init__(self, repository: DacRepository, directory: Directory) -> None:
        self.repository = repository
        self.directory = directory

    def members(self, dac_id: str) -> list[Member]:
        """Every member of ``dac_id`` (declared ones first), with the role that applies."""
        declared = self.directory.declared_members(dac_id)
        out = [Member(dac_id, identity, role, "settings") for identity, role in declared.items()]
        stored = [
            _stored(m)
            for m in self.repository.memberships_of(dac_id)
            if m.live and m.dac == dac_id and m.role in ROLES and m.identity_id not in declared
        ]
        return out + stored

    def role(self, identity: str | None, dac_id: str) -> str | None:
        """``member``, ``chair`` or None."""
        if identity is None:
            return None
        declared = self.directory.declared_members(dac_id).get(identity)
        if declared is not None:
            return declared
        if self.directory.get(dac_id) is None:
            return None
        m = self.repository.membership(dac_id, identity)
        return m.role if m is not None and m.live and m.role in ROLES and m.identity_id == identity else None

    def committees_of(self, identity: str | None) -> dict[str, str]:
        """dac id -> role for every DAC ``identity`` sits on."""
        if identity is None:
            return {}
        out: dict[str, str] = {}
        for committee in self.directory.committees():
            role = self.role(identity, committee.id)
            if role is not None:
                out[committee.id] = role
        return out


class MemberService:
    """List, add and remove DAC members, with authorization and audit (see the module docstring)."""

    def __init__(
        self,
        repository: DacRepository,
        directory: Directory,
        roles: Roles,
        identities: IdentityLookup,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repository = repository
        self.directory = directory
        self.roles = roles
        self.identities = identities
        self.clock = clock

    def _committee(self, actor: str | None, action: str, dac_id: str, *, chair: bool) -> Committee:
        committee = self.directory.get(dac_id)
        admin = self.directory.is_admin(actor)
        role = self.roles.role(actor, dac_id) if committee is not None else None
        allowed = admin or (role == ROLE_CHAIR if chair else role is not None)
        if not allowed:
            audit.denied(self.repository, int(self.clock()), action, actor, dac=str(dac_id)[:200])
            raise Forbidden(f"You may not {action.split('.')[-1]} members of this DAC.")
        if committee is None:
            raise NotFound(f"no DAC {dac_id!r}")
        return committee

    def list(self, actor: str | None, dac_id: str) -> list[Member]:
        self._committee(actor, "members.list", dac_id, chair=False)
        return self.roles.members(dac_id)

    def add(self, actor: str | None, dac_id: str, identity_id: str, role: str = "member", reason: str = "") -> Member:
        """Seat ``identity_id`` on the DAC, or change the role of a member added earlier.

        One transaction writes the membership and its ``members.add`` event (with
        ``previous_role`` on a role change). Adding someone who already holds ``role`` is
        answered with their membership and writes nothing (a retry converges).
        """
        committee = self._committee(actor, "members.add", dac_id, chair=True)
        if role not in ROLES:
            raise ValidationError(f"role must be one of {', '.join(ROLES)}", {"role": "unknown role"})
        if not isinstance(identity_id, str) or not identity_id or self.identities.get(identity_id) is None:
            raise ValidationError("no broker identity with that id", {"identity": "unknown identity"})
        if identity_id in self.directory.declared_members(dac_id):
            raise ValidationError(
                "this member is declared in the settings file; change it there", {"identity": "declared in settings"}
            )
        now = int(self.clock())
        note = reason[: audit.MAX_REASON_CHARS]

        def run(tx: DacTx) -> Membership:
            current = tx.memberships.get(membership_key(committee.id, identity_id))
            fields = {"dac": committee.id, "identity": identity_id, "role": role, "reason": note}
            if current is not None and current.live:
                if current.role == role:
                    return current  # already so: nothing to write
                changed = dataclasses.replace(current, role=role, changed_by=actor or "", changed_at=now)
                tx.memberships.put(changed)
                tx.audit(audit.event("members.add", actor, previous_role=current.role, **fields), now)
                return changed
            added = Membership(committee.id, identity_id, role, added_by=actor or "", added_at=now, reason=note)
            tx.memberships.put(added)
            tx.audit(audit.event("members.add", actor, **fields), now)
            return added

        return _stored(self.repository.transact(run))

    def remove(self, actor: str | None, dac_id: str, identity_id: str, reason: str = "") -> None:
        """Remove a member added through the store; removing one already removed writes nothing."""
        committee = self._committee(actor, "members.remove", dac_id, chair=True)
        if identity_id in self.directory.declared_members(dac_id):
            raise ValidationError(
                "this member is declared in the settings file; remove them there", {"identity": "declared in settings"}
            )
        now = int(self.clock())
        note = reason[: audit.MAX_REASON_CHARS]

        def run(tx: DacTx) -> None:
            current = tx.memberships.get(membership_key(committee.id, identity_id)) if identity_id else None
            if current is None:
                raise NotFound("that identity is not a member of this DAC")
            if not current.live:
                return  # removed already (a retry): nothing to write
            tx.memberships.put(dataclasses.replace(current, removed_at=now, removed_by=actor or "", remove_reason=note))
            tx.audit(audit.event("members.remove", actor, dac=committee.id, identity=identity_id, reason=note), now)

        self.repository.transact(run)
