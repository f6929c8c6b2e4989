"""What the consent and device pages show of the visas a client would receive.

The visas come from ``visas_for`` (minted, relayed, remote: already judged where they were
gathered); here they are only read for display, through the strict JWS parser, and a visa
that does not parse shows as ``?``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.core.jose import JoseError, parse

MAX_VISA_BYTES = 65_536


@dataclass(frozen=True)
class VisaSummary:
    """What the consent page shows of one visa."""

    type: str
    value: str
    source: str
    iss: str


def _payload(token: str) -> dict[str, Any]:
    try:
        return parse(token, max_bytes=MAX_VISA_BYTES, max_depth=16).payload
    except JoseError:
        return {}


def summarize(tokens: list[str]) -> list[VisaSummary]:
    """Type, value, source and issuer of each visa, for the consent page."""
    out = []
    for token in tokens:
        payload = _payload(token)
        obj = payload.get("ga4gh_visa_v1")
        obj = obj if isinstance(obj, dict) else {}
        out.append(
            VisaSummary(
                type=str(obj.get("type", "?")),
                value=str(obj.get("value", "")),
                source=str(obj.get("source", "")),
                iss=str(payload.get("iss", "")),
            )
        )
    return out
