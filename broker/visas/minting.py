"""Visas we mint from our own decisions: DAC grants and registered access.

Minted at the moment a passport or userinfo answer is built, from the records as they are
then (a revoked grant produces nothing from that moment on):

- each live grant whose DAC still governs its dataset -> ``ControlledAccessGrants`` with
  ``by: dac``, ``source`` = the DAC's URL, ``value`` = the dataset's URL, ``asserted`` = the
  grant's decision time (``granted_at``), and ``exp`` = min(grant end, now + visa lifetime);
- each live registered-access record -> ``AcceptedTermsAndPolicies`` (``by: self``) or
  ``ResearcherStatus`` (``by: so`` / ``peer``) with value ``REGISTERED_ACCESS_DOI`` and the
  site's or the DAC's ``source``; ``exp`` = min(record end, now + visa lifetime).

Nothing in a visa comes from a request (GA-13): every claim is derived from the stored record
and the settings.

Revocation (GA-14): a visa minted from a record carries ``jti`` = ``<record id>.<random>``, so
whoever holds a visa can tell which decision it came from. :func:`record_of_jti` recovers the
record id and :func:`revocation_check` answers, for the verifier's ``revoked(jti)`` callable,
whether that decision is no longer live (revoked, ended, or a registered-access record
superseded by a newer decision); caches evict through the ``on_revoke`` hooks.

Reuse: a visa minted for a record is handed out again, unchanged, while the record is the same
(same visa object, same subject and end) and more than half the visa's lifetime is left. So a
researcher's repeated requests carry the same JWS, and every verifier's cache keyed by the token
hits instead of paying a signature and a verification per request. A revoked or ended record is
never minted (``live_grants`` filters it), so reuse cannot outlive a revocation at the minter.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.core.issue import Signer, mint_visa
from broker.core.models import CONTROLLED_ACCESS_GRANTS, REGISTERED_ACCESS_DOI, Visa, VisaObject
from broker.core.policy.decision import Withdrawn
from broker.dac.committees import Committee, Directory
from broker.dac.grants import GrantService
from broker.dac.records import SITE, Grant, RegisteredAccess
from broker.dac.registered import RegisteredAccessService
from broker.dac.repository import DacRepository
from broker.dac.settings import registered_access_source
from broker.store.kernel import Kernel

JTI_SEPARATOR = "."
MAX_REUSED_VISAS = 100_000  # minted visas kept for reuse (bounded: about 1 KB each)


def visa_jti(record_id: str) -> str:
    """``<record id>.<64 random bits>``: unique per visa, naming the decision it came from."""
    return f"{record_id}{JTI_SEPARATOR}{secrets.token_urlsafe(8)}"


def record_of_jti(jti: str) -> str | None:
    """The record id in a jti made by :func:`visa_jti` (the text before the last ``.``), else None."""
    if not isinstance(jti, str):
        return None
    record_id, sep, tail = jti.rpartition(JTI_SEPARATOR)
    return record_id if sep and record_id and tail else None


def grant_visa_object(grant: Grant, committee: Committee) -> VisaObject:
    """The ``ga4gh_visa_v1`` object of a DAC grant (all derived, nothing from a request)."""
    return VisaObject(
        type=CONTROLLED_ACCESS_GRANTS,
        asserted=grant.granted_at,
        value=committee.dataset_url(grant.dataset),
        source=committee.source,
        by="dac",
    )


def registered_visa_object(found: RegisteredAccess, source: str) -> VisaObject:
    return VisaObject(
        type=found.visa_type, asserted=found.granted_at, value=REGISTERED_ACCESS_DOI, source=source, by=found.by
    )


@dataclass(frozen=True)
class MintedVisa:
    """A visa we signed and the record it came from."""

    token: str
    record_id: str
    exp: int


class VisaMinter:
    """Mints a researcher's visas from grants and registered-access records."""

    def __init__(
        self,
        keyring: Signer,
        issuer: str,
        directory: Directory,
        grants: GrantService,
        registered: RegisteredAccessService,
        *,
        lifetime_seconds: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.directory = directory
        self.grants = grants
        self.registered = registered
        self.lifetime = lifetime_seconds or directory.settings.visa_lifetime_seconds
        self.clock = clock
        self._reuse: OrderedDict[str, tuple[tuple[object, ...], MintedVisa]] = OrderedDict()
        self._lock = threading.Lock()

    def _sign(self, sub: str, visa: VisaObject, record: Grant | RegisteredAccess, now: int) -> MintedVisa:
        fingerprint = (sub, visa, record.end, self.issuer)
        with self._lock:
            found = self._reuse.get(record.id)
        if found is not None and found[0] == fingerprint and found[1].exp - now > self.lifetime // 2:
            return found[1]
        exp = min(record.end, now + self.lifetime)
        jti = visa_jti(record.id)
        token = mint_visa(self.keyring, self.issuer, sub, visa, exp, now=now, jti=jti, assertion_end=record.end)
        minted = MintedVisa(token=token, record_id=record.id, exp=exp)
        with self._lock:
            self._reuse[record.id] = (fingerprint, minted)
            self._reuse.move_to_end(record.id)
            while len(self._reuse) > MAX_REUSED_VISAS:
                self._reuse.popitem(last=False)
        return minted

    def mint(self, identity_id: str) -> list[MintedVisa]:
        """Every visa this researcher holds from our own decisions right now."""
        now = int(self.clock())
        out = [
            self._sign(identity_id, grant_visa_object(grant, committee), grant, now)
            for grant, committee in self.grants.live_grants(identity_id)
        ]
        site = registered_access_source(self.directory.settings, self.directory.issuer)
        for found in self.registered.live_records(identity_id):
            committee = self.directory.get(found.dac) if found.dac != SITE else None
            source = committee.source if committee is not None else site
            out.append(self._sign(identity_id, registered_visa_object(found, source), found, now))
        return out

    def tokens(self, identity_id: str) -> list[str]:
        return [m.token for m in self.mint(identity_id)]

    def withdrawn(self, identity_id: str) -> list[Withdrawn]:
        """See :func:`withdrawn_visas` (this minter's grants and issuer)."""
        return withdrawn_visas(self.grants, self.issuer, identity_id)


def withdrawn_visas(grants: GrantService, issuer: str, identity_id: str) -> list[Withdrawn]:
    """The visas revoked DAC grants gave ``identity_id`` (unsigned, never to be released): the
    policy names them in a deny as ``grant_revoked`` instead of ``missing_visa``."""
    out = []
    for grant, committee in grants.revoked_grants(identity_id):
        assert grant.revoked_at is not None  # revoked_grants returns revoked grants only
        visa = Visa(
            iss=issuer, sub=identity_id, iat=grant.granted_at, exp=grant.end, visa=grant_visa_object(grant, committee)
        )
        what = f"the grant of DAC {committee.id!r} for dataset {grant.dataset!r}"
        out.append(Withdrawn(visa, grant.revoked_at, what))
    return out


def kernel_of(store: Any) -> Kernel:
    """The kernel itself, or the kernel a store facade serves (its ``kernel``); else TypeError."""
    inner = getattr(store, "kernel", None)
    if isinstance(inner, Kernel):
        return inner
    if isinstance(store, Kernel):
        return store
    raise TypeError(f"{type(store).__name__} is neither a store kernel nor a store serving one")


def revocation_check(store: Kernel, clock: Callable[[], float] = time.time) -> Callable[[str], bool]:
    """A ``revoked(jti)`` callable for :class:`broker.core.verify.Verifier`.

    True when ``jti`` names one of our records (grant, registered access) that is revoked or
    no longer live; False for any other jti. Only ever makes the answer stricter: at worst a
    foreign issuer's visa whose jti happens to name a revoked record of ours is refused.
    """
    repository = DacRepository(kernel_of(store))

    def revoked(jti: str) -> bool:
        record_id = record_of_jti(jti)
        if record_id is None:
            return False
        return repository.in_force(record_id, int(clock())) is False

    return revoked
