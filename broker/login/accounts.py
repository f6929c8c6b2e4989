"""Broker accounts behind upstream identities: found by (iss, sub), created, or linked.

An upstream identity is the pair (issuer, subject) exactly as the upstream's verified ID
token states it; it is the only key by which an account is found (OIDC Core 5.7: never the
e-mail, which another upstream may assert for someone else, THREAT-MODEL RP-08). A second
identity joins an account only by :func:`link`, which the researcher starts from their
account page while logged in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from broker.errors import BrokerError
from broker.store.base import Conflict, Identity, IdentityLink, Store


class LinkRefused(BrokerError):
    """The upstream identity already belongs to another account; nothing was changed."""

    status = 409
    code = "link_refused"


@dataclass(frozen=True)
class Profile:
    """What a new account shows: cleaned name and e-mail (see :mod:`broker.login.claims`)."""

    display_name: str
    email: str


def find_or_create(store: Store, iss: str, sub: str, connector_id: str, profile: Profile, now: int) -> str:
    """The identity id of the account linked to (iss, sub), creating the account on first login."""
    link = store.find_link(iss, sub)
    if link is not None:
        return link.identity_id
    identity = Identity(
        id=secrets.token_hex(16), created_at=now, display_name=profile.display_name, email=profile.email
    )
    store.put_identity(identity)
    try:
        store.link_identity(
            IdentityLink(identity_id=identity.id, iss=iss, sub=sub, linked_at=now, connector=connector_id)
        )
    except Conflict:
        # Another request created the account for this (iss, sub) between our lookup and our
        # link: use that one (the identity made here stays unused, linked to nothing).
        link = store.find_link(iss, sub)
        if link is None:
            raise
        return link.identity_id
    return identity.id


def link(store: Store, identity_id: str, iss: str, sub: str, connector_id: str, now: int) -> bool:
    """Link (iss, sub) to ``identity_id``; True if newly linked, False if it already was.

    :class:`LinkRefused` when it belongs to another account (checked again by the store,
    atomically, so a concurrent login cannot slip in between).
    """
    existing = store.find_link(iss, sub)
    if existing is not None:
        if existing.identity_id != identity_id:
            raise LinkRefused("this upstream identity belongs to another account")
        return False
    try:
        store.link_identity(
            IdentityLink(identity_id=identity_id, iss=iss, sub=sub, linked_at=now, connector=connector_id)
        )
    except Conflict:
        raise LinkRefused("this upstream identity belongs to another account") from None
    return True
