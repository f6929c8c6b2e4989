"""What the first release wrote still works after the move to typed kernel records.

The first release kept grants, consent withdrawals and upstream visa material as tickets
(``tests.support.legacy_store``); refresh tokens, consents, sessions and clients had records whose
layout is kept. Here the old store writes them, and the new OP reads them.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from broker.oidc.passwords import token_hash
from broker.oidc.records import Consent, RefreshToken
from tests.oidc.conftest import OpParts
from tests.oidc.inprocess import access_ok, error_of, refresh
from tests.support.legacy_store import LegacyStore

DAY = 86400


def _old_grant(old: LegacyStore, grant_id: str, identity_id: str, authorized_ms: int, now: int) -> str:
    """A refresh token and its grant as the first release wrote them; returns the token."""
    token = secrets.token_urlsafe(32)
    record = {
        "grant_id": grant_id,
        "identity_id": identity_id,
        "client_id": "app",
        "scope": ["openid"],
        "authorized_ms": authorized_ms,
        "started_at": now,
        "expires_at": now + 14 * DAY,
    }
    old.put_ticket("oidc_grant", grant_id, record, 15 * DAY)
    old.put_refresh_token(RefreshToken(token_hash(token), grant_id, identity_id, "app", "openid", now, now + 7 * DAY))
    return token


def test_a_refresh_token_issued_before_the_upgrade_still_refreshes(op_parts: OpParts) -> None:
    old = LegacyStore(op_parts.kernel)
    now = int(time.time())
    token = _old_grant(old, "old-grant", "alice-id", now * 1000 - 5000, now)
    rotated = refresh(op_parts.op, token)
    assert access_ok(op_parts.op, rotated["access_token"])
    refresh(op_parts.op, rotated["refresh_token"])  # its successor is used: presenting it again is no retry
    assert error_of(refresh, op_parts.op, token) == "invalid_grant"  # reuse detection holds for it too


def test_a_withdrawal_acknowledged_before_the_upgrade_is_not_forgotten(op_parts: OpParts) -> None:
    old = LegacyStore(op_parts.kernel)
    now = int(time.time())
    token = _old_grant(old, "withdrawn-grant", "bob-id", now * 1000 - 5000, now)
    old.put_consent(Consent("bob-id", "app", ("openid",), now))
    digest = hashlib.sha256(b"bob-id\x00app").hexdigest()
    old.put_ticket("consent_withdrawn", digest, {"at_ms": now * 1000}, 15 * DAY)
    assert error_of(refresh, op_parts.op, token) == "invalid_grant"
    unrecorded, _ = op_parts.op.tokens.mint(sub="bob-id", client_id="app", scope=("openid",), grant="g", now=now)
    assert not access_ok(op_parts.op, unrecorded)
    assert op_parts.op.consents.get("bob-id", "app") is not None  # the consent record reads back as it was


def test_upstream_visa_material_recorded_before_the_upgrade_still_gives_visas(op_parts: OpParts) -> None:
    from broker.identity.service import IdentityService
    from broker.login.material import UpstreamVisas

    old = LegacyStore(op_parts.kernel)
    material = {"affiliations": [{"value": "member@uni.example", "source": "https://uni.example/", "asserted": 1}]}
    old.put_ticket("visa_material", "carol-id|idp1", {**material, "relayed": []}, DAY)
    visas = UpstreamVisas(
        op_parts.kernel,
        IdentityService(op_parts.kernel),
        op_parts.op.keys,  # type: ignore[arg-type]
        issuer=op_parts.op.issuer,
        connectors=["local", "idp1"],
        visa_lifetime_seconds=3600,
        material_lifetime_seconds=DAY,
    )
    assert len(visas.visas("carol-id")) == 1
