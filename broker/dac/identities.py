"""What the DAC area needs to know about broker identities: whether one exists, its name and e-mail.

The identity area owns identities; the DAC services only look one up through this one-method
protocol: to check that a researcher or a new member named in a request is a broker identity,
and to show and match people (display name, e-mail) on applications. The composition root
passes the identity area's :class:`~broker.identity.service.IdentityService`; tests pass
``Records(kernel, IDENTITIES)``.
"""

from __future__ import annotations

from typing import Protocol

from broker.identity.records import Identity


class IdentityLookup(Protocol):
    """``get(identity_id)``: the identity record, or None when there is no such identity."""

    def get(self, identity_id: str, /) -> Identity | None: ...


def email_of(identities: IdentityLookup, identity_id: str | None) -> str:
    """The identity's e-mail, lower-cased, or "" (unknown identity, or none recorded)."""
    if not identity_id:
        return ""
    person = identities.get(identity_id)
    return person.email.strip().lower() if person is not None and person.email else ""


def name_of(identities: IdentityLookup, identity_id: str | None) -> str:
    """The identity's display name, else its e-mail, else its id (what pages show for a person)."""
    if not identity_id:
        return ""
    person = identities.get(identity_id)
    if person is None:
        return identity_id
    return person.display_name or person.email or identity_id
