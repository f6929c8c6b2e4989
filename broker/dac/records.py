"""DAC memberships and registered-access records, kept in the store as ``Grant`` records.

The store protocol has one record for "an authority decided something about an identity,
from a start to an end, revocable with a reason": :class:`~broker.store.base.Grant`. Until
the store has dedicated methods, the broker's own decisions use it too, told apart by a
``dataset`` under the reserved prefix ``ga4gh-broker:`` (which real dataset ids may not use):

- membership: ``ga4gh-broker:dac-member:<dac>:<role>``, id ``dac-member:<dac>:<identity>``
  (one record per member and DAC, replaced on a role change, revoked on removal);
- registered access: ``ga4gh-broker:registered-access:<visa type>:<by>``; ``dac`` is the
  DAC whose ``source`` the visa carries, or ``""`` for the site's own source.

Grants, memberships and registered access all keep start/end/revocation the same way, so
one "live" rule (``Grant.live``) applies to all.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.core.models import ACCEPTED_TERMS_AND_POLICIES, RESEARCHER_STATUS
from broker.dac.committees import ROLES
from broker.dac.settings import RESERVED_PREFIX
from broker.store.base import Grant

MEMBER_PREFIX = RESERVED_PREFIX + "dac-member:"
REGISTERED_PREFIX = RESERVED_PREFIX + "registered-access:"
# Far enough to mean "until removed" and still a valid NumericDate.
FOREVER = 253_402_300_799

# (visa type, by) pairs a registered-access record may hold.
REGISTERED_KINDS: frozenset[tuple[str, str]] = frozenset(
    {
        (ACCEPTED_TERMS_AND_POLICIES, "self"),
        (RESEARCHER_STATUS, "so"),
        (RESEARCHER_STATUS, "peer"),
    }
)


def membership_dataset(dac_id: str, role: str) -> str:
    return f"{MEMBER_PREFIX}{dac_id}:{role}"


def membership_id(dac_id: str, identity_id: str) -> str:
    return f"dac-member:{dac_id}:{identity_id}"


def registered_dataset(visa_type: str, by: str) -> str:
    return f"{REGISTERED_PREFIX}{visa_type}:{by}"


def is_dataset_grant(grant: Grant) -> bool:
    """True for a DAC's grant on a real dataset (not one of the broker's own records)."""
    return not grant.dataset.startswith(RESERVED_PREFIX)


@dataclass(frozen=True)
class Membership:
    """A member added through the store (members in the settings file are not records)."""

    dac: str
    identity_id: str
    role: str
    record: Grant


def as_membership(grant: Grant) -> Membership | None:
    if not grant.dataset.startswith(MEMBER_PREFIX):
        return None
    dac_id, _, role = grant.dataset[len(MEMBER_PREFIX) :].rpartition(":")
    if role not in ROLES or dac_id != grant.dac:
        return None
    return Membership(dac=grant.dac, identity_id=grant.identity_id, role=role, record=grant)


@dataclass(frozen=True)
class RegisteredAccess:
    """A registered-access decision: acceptance of terms (by self) or researcher status (by so / peer)."""

    visa_type: str
    by: str
    record: Grant

    @property
    def dac(self) -> str:
        return self.record.dac


def as_registered(grant: Grant) -> RegisteredAccess | None:
    if not grant.dataset.startswith(REGISTERED_PREFIX):
        return None
    visa_type, _, by = grant.dataset[len(REGISTERED_PREFIX) :].partition(":")
    if (visa_type, by) not in REGISTERED_KINDS:
        return None
    return RegisteredAccess(visa_type=visa_type, by=by, record=grant)
