"""A researcher's current visas: the ones we mint on demand and the ones relayed as they came.

Sources, all read from the store at the moment of asking (so a removed assertion stops
producing visas at once, SPEC-DIGEST B29):
- upstream claims recorded at login per connector (``eduPersonScopedAffiliation`` becomes
  an ``AffiliationAndRole`` visa we mint with ``by: system``);
- visas relayed from an upstream's ``ga4gh_passport_v1`` (verified with the trust
  configuration at login; passed on byte for byte, dropped once expired);
- a ``LinkedIdentities`` visa when the account has two or more linked upstream identities.

The per-connector record lives in the store's ticket space (kind ``visa_material``, key
``<identity>|<connector>``) with a lifetime; see the report for the dedicated store method
this would rather have.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.core.linked_identities import format_linked_identities
from broker.core.models import AFFILIATION_AND_ROLE, LINKED_IDENTITIES, VisaObject
from broker.store.base import Store

if TYPE_CHECKING:
    from broker.settings import Settings

MATERIAL_KIND = "visa_material"


@dataclass(frozen=True)
class VisaSummary:
    """What the consent page shows of one visa."""

    type: str
    value: str
    source: str
    iss: str


def material_key(identity_id: str, connector_id: str) -> str:
    return f"{identity_id}|{connector_id}"


def record_material(
    store: Store,
    identity_id: str,
    connector_id: str,
    *,
    affiliations: list[dict[str, Any]],
    relayed: list[str],
    ttl: int,
) -> None:
    """Replace what one upstream login told us about the researcher (called at each login)."""
    store.put_ticket(
        MATERIAL_KIND, material_key(identity_id, connector_id), {"affiliations": affiliations, "relayed": relayed}, ttl
    )


def _payload(token: str) -> dict[str, Any]:
    """The payload of a visa we already verified at login (to read exp and the visa object)."""
    try:
        segment = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _mint(keyring: Any, settings: Settings, sub: str, visa: VisaObject, now: int) -> str:
    from broker.core.issue import mint_visa

    return mint_visa(keyring, settings.issuer, sub, visa, now + settings.oidc.visa_lifetime_seconds, now=now)


def current_visas(
    settings: Settings, store: Store, keyring: Any, identity_id: str, now: int | None = None
) -> list[str]:
    """Every visa JWS to release for this researcher right now (minted ones first)."""
    now = int(time.time()) if now is None else now
    minted: list[str] = []
    relayed: list[str] = []
    for connector in settings.login.connectors:
        material = store.peek_ticket(MATERIAL_KIND, material_key(identity_id, connector.id))
        if not material:
            continue
        for aff in material.get("affiliations", []):
            visa = VisaObject(
                type=AFFILIATION_AND_ROLE,
                asserted=int(aff["asserted"]),
                value=str(aff["value"]),
                source=str(aff["source"]),
                by="system",
            )
            minted.append(_mint(keyring, settings, identity_id, visa, now))
        for token in material.get("relayed", []):
            exp = _payload(token).get("exp")
            if isinstance(exp, int) and exp > now:
                relayed.append(token)
    links = store.links_of(identity_id)
    if len(links) >= 2:
        value = format_linked_identities((link.iss, link.sub) for link in links)
        visa = VisaObject(
            type=LINKED_IDENTITIES,
            asserted=min(link.linked_at for link in links),
            value=value,
            source=settings.issuer.rstrip("/"),
            by="system",
        )
        minted.append(_mint(keyring, settings, identity_id, visa, now))
    return minted + relayed


def summarize(tokens: list[str]) -> list[VisaSummary]:
    """Type, value, source and issuer of each visa, for the consent page."""
    out = []
    for token in tokens:
        payload = _payload(token)
        obj = payload.get("ga4gh_visa_v1") if isinstance(payload.get("ga4gh_visa_v1"), dict) else {}
        out.append(
            VisaSummary(
                type=str(obj.get("type", "?")),
                value=str(obj.get("value", "")),
                source=str(obj.get("source", "")),
                iss=str(payload.get("iss", "")),
            )
        )
    return out
