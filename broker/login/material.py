"""A researcher's visas from logging in: the ones we mint from upstream claims, and the ones relayed as they came.

Sources, all read from the kernel at the moment of asking (so a removed assertion stops
producing visas at once, SPEC-DIGEST B29):

- upstream claims recorded at login per connector (``eduPersonScopedAffiliation`` becomes an
  ``AffiliationAndRole`` visa we mint with ``by: system``);
- visas relayed from an upstream's ``ga4gh_passport_v1`` (verified with the trust
  configuration at login; passed on byte for byte, dropped once expired);
- a ``LinkedIdentities`` visa when the account has two or more linked upstream identities.

What a login told us is a ``visa-material`` record per (account, connector), replaced at each
login and kept as long as a login's refresh tokens can live. The first release kept it as a
ticket (``ticket:visa_material``, ``<identity>|<connector>``), still read when no record exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from broker.core.issue import Signer, mint_visa
from broker.core.jose import JoseError, parse
from broker.core.linked_identities import format_linked_identities
from broker.core.models import AFFILIATION_AND_ROLE, LINKED_IDENTITIES, VisaObject
from broker.identity.service import IdentityService
from broker.login.records import VISA_MATERIAL, VisaMaterial
from broker.store.kernel import Kernel, key_of
from broker.store.records import Records

MAX_VISA_BYTES = 65_536
LEGACY_KIND = "ticket:visa_material"


class UpstreamVisas:
    """Records what upstream logins said, and turns it into visas on demand (module docstring)."""

    def __init__(
        self,
        kernel: Kernel,
        identities: IdentityService,
        keys: Signer,
        *,
        issuer: str,
        connectors: Sequence[str],
        visa_lifetime_seconds: int,
        material_lifetime_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kernel = kernel
        self._material = Records(kernel, VISA_MATERIAL)
        self._identities = identities
        self._keys = keys
        self._issuer = issuer
        self._connectors = tuple(connectors)
        self._visa_lifetime = visa_lifetime_seconds
        self._material_lifetime = material_lifetime_seconds
        self._clock = clock

    def record(
        self, identity_id: str, connector: str, *, affiliations: list[dict[str, Any]], relayed: list[str]
    ) -> None:
        """Replace what one upstream login told us about the researcher (called at each login)."""
        expires = int(self._clock()) + self._material_lifetime
        self._material.put(VisaMaterial(identity_id, connector, expires, tuple(affiliations), tuple(relayed)))

    def _legacy(self, identity_id: str, connector: str) -> VisaMaterial | None:
        old = self._kernel.get(LEGACY_KIND, f"{identity_id}|{connector}")
        if old is None:
            return None
        affiliations = [a for a in old.get("affiliations", []) if isinstance(a, dict)]
        relayed = [t for t in old.get("relayed", []) if isinstance(t, str)]
        return VisaMaterial(identity_id, connector, 0, tuple(affiliations), tuple(relayed))

    def _mint(self, sub: str, visa: VisaObject, now: int) -> str:
        return mint_visa(self._keys, self._issuer, sub, visa, now + self._visa_lifetime, now=now)

    def visas(self, identity_id: str, now: int | None = None) -> list[str]:
        """Every visa JWS to release for this researcher from logins (minted ones first)."""
        now = int(self._clock()) if now is None else now
        minted: list[str] = []
        relayed: list[str] = []
        for connector in self._connectors:
            material = self._material.get(key_of(identity_id, connector)) or self._legacy(identity_id, connector)
            if material is None:
                continue
            for aff in material.affiliations:
                visa = VisaObject(
                    type=AFFILIATION_AND_ROLE,
                    asserted=int(aff["asserted"]),
                    value=str(aff["value"]),
                    source=str(aff["source"]),
                    by="system",
                )
                minted.append(self._mint(identity_id, visa, now))
            for token in material.relayed:
                if _expires(token) > now:
                    relayed.append(token)
        links = self._identities.links_of(identity_id)
        if len(links) >= 2:
            visa = VisaObject(
                type=LINKED_IDENTITIES,
                asserted=min(link.linked_at for link in links),
                value=format_linked_identities((link.iss, link.sub) for link in links),
                source=self._issuer.rstrip("/"),
                by="system",
            )
            minted.append(self._mint(identity_id, visa, now))
        return minted + relayed


def _expires(token: str) -> int:
    """The ``exp`` of a visa verified at login (0 when it cannot be read: then it is dropped)."""
    try:
        exp = parse(token, max_bytes=MAX_VISA_BYTES, max_depth=16).payload.get("exp")
    except JoseError:
        return 0
    return exp if isinstance(exp, int) and not isinstance(exp, bool) else 0
