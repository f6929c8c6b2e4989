"""Broker accounts behind upstream identities: found by (iss, sub), created, linked, searched.

An upstream identity is the pair (issuer, subject) exactly as the upstream's verified ID
token states it; it is the only key by which an account is found (OIDC Core 5.7: never the
e-mail, which another upstream may assert for someone else, THREAT-MODEL RP-08). A second
identity joins an account only by :meth:`IdentityService.link`, which the researcher starts
from the account page while logged in; the conflict rule ("an upstream identity belongs to
at most one account") is checked and the link written in one kernel transaction, so two
concurrent logins or links can never give one (iss, sub) to two accounts.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from broker.errors import BrokerError
from broker.identity.records import IDENTITIES, LINKS, Identity, IdentityLink, identity_term, link_key
from broker.store.kernel import MAX_NAME_CHARS, Kernel, Tx
from broker.store.records import Records

#: Most people a search returns, and most records it looks at (DESIGN rule 5).
MAX_SEARCH_RESULTS = 50
MAX_SEARCH_SCAN = 100_000
MAX_QUERY_CHARS = 200


class LinkRefused(BrokerError):
    """The upstream identity already belongs to another account; nothing was changed."""

    status = 409
    code = "link_refused"


class IdentityDirectory(Protocol):
    """What other areas (the DAC) need of accounts: look one up by id."""

    def get(self, identity_id: str) -> Identity | None: ...


@dataclass(frozen=True)
class Profile:
    """What a new account shows: cleaned name and e-mail (see :mod:`broker.login.claims`)."""

    display_name: str
    email: str


def _usable(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS


class IdentityService:
    """Accounts and their upstream links on the store kernel."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._identities = Records(kernel, IDENTITIES)
        self._links = Records(kernel, LINKS)

    def get(self, identity_id: str) -> Identity | None:
        """The account ``identity_id``, or None (also for an id no account could have)."""
        return self._identities.get(identity_id) if _usable(identity_id) else None

    def find_link(self, iss: str, sub: str) -> IdentityLink | None:
        """The link of the upstream identity (iss, sub), if it belongs to an account."""
        if not (_usable(iss) and _usable(sub)):
            return None
        return self._links.get(link_key(iss, sub))

    def links_of(self, identity_id: str) -> list[IdentityLink]:
        """The upstream identities of an account, oldest first."""
        if not _usable(identity_id):
            return []
        links = self._links.find(identity_term(identity_id))
        return sorted(links, key=lambda link: (link.linked_at, link.iss, link.sub))

    def find_or_create(self, iss: str, sub: str, connector: str, profile: Profile, now: int) -> Identity:
        """The account linked to (iss, sub), created with ``profile`` at its first login."""
        new = Identity(id=secrets.token_hex(16), created_at=now, display_name=profile.display_name, email=profile.email)
        link = IdentityLink(identity_id=new.id, iss=iss, sub=sub, linked_at=now, connector=connector)

        def run(tx: Tx) -> str:
            current = self._links.in_tx(tx).get(link_key(iss, sub))
            if current is not None:
                return current.identity_id
            self._identities.in_tx(tx).put(new)
            self._links.in_tx(tx).put(link)
            return new.id

        self._check(iss, sub)
        identity_id = self._kernel.transact(run)
        found = self.get(identity_id)
        return found if found is not None else Identity(id=identity_id, created_at=now)

    def register(
        self,
        iss: str,
        sub: str,
        connector: str,
        profile: Profile,
        now: int,
        also: Callable[[Tx, Identity], None] | None = None,
    ) -> Identity:
        """A new account for (iss, sub), or :class:`LinkRefused` when (iss, sub) is taken.

        ``also(tx, identity)`` queues the caller's own writes (a local account's password
        record) in the same transaction, so the account exists with all of them or not at all.
        """
        new = Identity(id=secrets.token_hex(16), created_at=now, display_name=profile.display_name, email=profile.email)
        link = IdentityLink(identity_id=new.id, iss=iss, sub=sub, linked_at=now, connector=connector)

        def run(tx: Tx) -> bool:
            if self._links.in_tx(tx).get(link_key(iss, sub)) is not None:
                return False
            self._identities.in_tx(tx).put(new)
            self._links.in_tx(tx).put(link)
            if also is not None:
                also(tx, new)
            return True

        self._check(iss, sub)
        if not self._kernel.transact(run):
            raise LinkRefused("this upstream identity already belongs to an account")
        return new

    def link(self, identity_id: str, iss: str, sub: str, connector: str, now: int) -> bool:
        """Link (iss, sub) to ``identity_id``; True if newly linked, False if it already was.

        :class:`LinkRefused` when it belongs to another account (read and written in one
        transaction, so a concurrent login cannot slip in between).
        """
        self._check(iss, sub)
        if not _usable(identity_id):
            raise LinkRefused("no such account")
        link = IdentityLink(identity_id=identity_id, iss=iss, sub=sub, linked_at=now, connector=connector)

        def run(tx: Tx) -> bool:
            links = self._links.in_tx(tx)
            current = links.get(link_key(iss, sub))
            if current is not None:
                if current.identity_id != identity_id:
                    raise LinkRefused("this upstream identity belongs to another account")
                return False
            links.put(link)
            return True

        return self._kernel.transact(run)

    def unlink_in(self, tx: Tx, identity_id: str, iss: str, sub: str) -> bool:
        """Queue, in ``tx``, the removal of the link (iss, sub) if it belongs to ``identity_id``.

        The account itself stays (its grants, other links and audit trail name it); only this
        way of reaching it goes. Returns whether the link was there to remove.
        """
        links = self._links.in_tx(tx)
        current = links.get(link_key(iss, sub)) if _usable(iss) and _usable(sub) else None
        if current is None or current.identity_id != identity_id:
            return False
        links.delete(link_key(iss, sub))
        return True

    def search(self, query: str, limit: int = MAX_SEARCH_RESULTS) -> list[Identity]:
        """People whose display name or e-mail contains ``query`` (case-insensitive), or whose id
        or a linked upstream ``sub`` is exactly ``query``; at most ``limit`` (<= 50), by name.

        A lookup for a DAC member's page, never a trust decision: substring matching is
        fine here, and both the query and the work are bounded.
        """
        wanted = query.strip()
        if not 2 <= len(wanted) <= MAX_QUERY_CHARS:
            return []
        limit = max(0, min(limit, MAX_SEARCH_RESULTS))
        folded = wanted.casefold()
        found: dict[str, Identity] = {}
        exact = self.get(wanted)
        if exact is not None:
            found[exact.id] = exact
        for scanned, link in enumerate(self._links.scan()):
            if scanned >= MAX_SEARCH_SCAN or len(found) >= limit:
                break
            if link.sub == wanted and link.identity_id not in found:
                person = self.get(link.identity_id)
                if person is not None:
                    found[person.id] = person
        for scanned, person in enumerate(self._identities.scan()):
            if scanned >= MAX_SEARCH_SCAN or len(found) >= limit:
                break
            if folded in person.display_name.casefold() or folded in person.email.casefold():
                found.setdefault(person.id, person)
        return sorted(found.values(), key=lambda p: (p.display_name.casefold(), p.id))[:limit]

    @staticmethod
    def _check(iss: str, sub: str) -> None:
        if not (_usable(iss) and _usable(sub)):
            raise LinkRefused(f"an upstream identity needs an iss and a sub of 1 to {MAX_NAME_CHARS} characters")
