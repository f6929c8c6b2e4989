"""DAC membership: who is member or chair of which DAC, and managing it (``dac members``).

Members come from two places: the settings file (``dac.committees[].members``), which only
an edit of the file changes, and membership records in the store, which a DAC's chair or a
site admin adds and removes. A member declared in the settings keeps the declared role.

Authorization: listing the members of a DAC is for its members and chairs and for site
admins; adding and removing is for its chairs and for site admins. Anything else raises
:class:`Forbidden`, is audited as ``dac.denied`` and changes nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from broker.dac import audit
from broker.dac.committees import ROLE_CHAIR, ROLES, Committee, Directory
from broker.dac.errors import Forbidden, NotFound, ValidationError
from broker.dac.records import FOREVER, as_membership, membership_dataset, membership_id
from broker.store.base import Grant, Store


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


class Roles:
    """Answers "what role does this identity hold on that DAC?" from the settings and the store."""

    def __init__(self, store: Store, directory: Directory, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock

    def members(self, dac_id: str) -> list[Member]:
        """Every member of ``dac_id`` (declared ones first), with the role that applies."""
        now = int(self.clock())
        declared = self.directory.declared_members(dac_id)
        out = [Member(dac_id, identity, role, "settings") for identity, role in declared.items()]
        stored: dict[str, Member] = {}
        for role in ROLES:
            for grant in self.store.grants_for_dataset(membership_dataset(dac_id, role)):
                m = as_membership(grant)
                if m is None or m.dac != dac_id or not grant.live(now) or m.identity_id in declared:
                    continue
                if grant.id != membership_id(dac_id, m.identity_id):
                    continue  # not the current record for this identity
                stored[m.identity_id] = Member(
                    dac_id, m.identity_id, m.role, "store", grant.granted_by, grant.granted_at
                )
        return out + sorted(stored.values(), key=lambda m: m.identity_id)

    def role(self, identity: str | None, dac_id: str) -> str | None:
        """``member``, ``chair`` or None."""
        if identity is None:
            return None
        declared = self.directory.declared_members(dac_id).get(identity)
        if declared is not None:
            return declared
        grant = self.store.get_grant(membership_id(dac_id, identity))
        if grant is None or not grant.live(int(self.clock())):
            return None
        m = as_membership(grant)
        return m.role if m is not None and m.identity_id == identity else None

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
    """List, add and remove DAC members, with authorization and audit."""

    def __init__(self, store: Store, directory: Directory, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self.roles = Roles(store, directory, clock)

    def _committee(self, actor: str | None, action: str, dac_id: str, *, chair: bool) -> Committee:
        now = int(self.clock())
        committee = self.directory.get(dac_id)
        admin = self.directory.is_admin(actor)
        role = self.roles.role(actor, dac_id) if committee is not None else None
        allowed = admin or (role == ROLE_CHAIR if chair else role is not None)
        if not allowed:
            audit.denied(self.store, now, action, actor, dac=dac_id)
            raise Forbidden(f"You may not {action.split('.')[-1]} members of this DAC.")
        if committee is None:
            raise NotFound(f"no DAC {dac_id!r}")
        return committee

    def list(self, actor: str | None, dac_id: str) -> list[Member]:
        self._committee(actor, "members.list", dac_id, chair=False)
        return self.roles.members(dac_id)

    def add(self, actor: str | None, dac_id: str, identity_id: str, role: str = "member", reason: str = "") -> Member:
        """Add ``identity_id`` to the DAC (or change the role of a member added earlier)."""
        committee = self._committee(actor, "members.add", dac_id, chair=True)
        if role not in ROLES:
            raise ValidationError(f"role must be one of {', '.join(ROLES)}", {"role": "unknown role"})
        if not isinstance(identity_id, str) or self.store.get_identity(identity_id) is None:
            raise ValidationError("no broker identity with that id", {"identity": "unknown identity"})
        if identity_id in self.directory.declared_members(dac_id):
            raise ValidationError(
                "this member is declared in the settings file; change it there", {"identity": "declared in settings"}
            )
        now = int(self.clock())
        key = membership_id(committee.id, identity_id)
        previous = self.store.get_grant(key)
        record = Grant(
            id=key,
            identity_id=identity_id,
            dataset=membership_dataset(committee.id, role),
            dac=committee.id,
            granted_by=actor or "",
            granted_at=now,
            start=now,
            end=FOREVER,
            reason=reason[: audit.MAX_REASON_CHARS],
        )
        self.store.put_grant(record)
        audit.record(
            self.store,
            now,
            "members.add",
            actor,
            undo=_restore(self.store, record, previous),
            dac=committee.id,
            identity=identity_id,
            role=role,
            reason=record.reason,
        )
        return Member(committee.id, identity_id, role, "store", actor, now)

    def remove(self, actor: str | None, dac_id: str, identity_id: str, reason: str = "") -> None:
        committee = self._committee(actor, "members.remove", dac_id, chair=True)
        if identity_id in self.directory.declared_members(dac_id):
            raise ValidationError(
                "this member is declared in the settings file; remove them there", {"identity": "declared in settings"}
            )
        now = int(self.clock())
        previous = self.store.get_grant(membership_id(committee.id, identity_id))
        if previous is None or not previous.live(now):
            raise NotFound("that identity is not a member of this DAC")
        removed = dataclasses.replace(
            previous, revoked_at=now, revoked_by=actor or "", revoke_reason=reason[: audit.MAX_REASON_CHARS]
        )
        self.store.put_grant(removed)
        audit.record(
            self.store,
            now,
            "members.remove",
            actor,
            undo=_restore(self.store, removed, previous),
            dac=committee.id,
            identity=identity_id,
            reason=removed.revoke_reason,
        )


def _restore(store: Store, written: Grant, previous: Grant | None) -> Callable[[], None]:
    """Undo a ``put_grant``: put back the previous record, or revoke the new one (no delete exists)."""

    def undo() -> None:
        if previous is not None:
            store.put_grant(previous)
        else:
            store.put_grant(
                dataclasses.replace(
                    written,
                    revoked_at=written.granted_at,
                    revoked_by="system",
                    revoke_reason="rolled back: audit failed",
                )
            )

    return undo
