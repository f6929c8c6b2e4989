"""The identity area's records: broker accounts and the upstream identities linked to them.

Kinds, keys and JSON layout are those of the first release (``broker.store.legacy``), so
existing accounts read back unchanged:

- ``identity`` keyed by the account id;
- ``identity-link`` keyed by ``key_of(iss, sub)``, with the term ``identity:<account id>``,
  so one upstream identity can belong to at most one account, and an account's links are
  one ``find`` away.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.store.kernel import key_of
from broker.store.records import RecordType


@dataclass(frozen=True)
class Identity:
    """A broker account: our ``sub``. Upstream identities link to it (:class:`IdentityLink`)."""

    id: str
    created_at: int
    display_name: str = ""
    email: str = ""  # shown to DAC members; never used to find or link accounts (RP-08)


@dataclass(frozen=True)
class IdentityLink:
    """An upstream identity ``{iss, sub}`` that belongs to a broker account."""

    identity_id: str
    iss: str
    sub: str
    linked_at: int
    connector: str = ""  # which login connector it came through


def link_key(iss: str, sub: str) -> str:
    return key_of(iss, sub)


def identity_term(identity_id: str) -> str:
    return f"identity:{identity_id}"


IDENTITIES: RecordType[Identity] = RecordType("identity", Identity, key=lambda i: i.id)
LINKS: RecordType[IdentityLink] = RecordType(
    "identity-link",
    IdentityLink,
    key=lambda link: link_key(link.iss, link.sub),
    terms=lambda link: (identity_term(link.identity_id),),
)
