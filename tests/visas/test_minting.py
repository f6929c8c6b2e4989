"""Minted visas: exact fields (GA-13, GA-16), exp clamp, revocation by jti, verified by our own clearinghouse."""

from __future__ import annotations

from typing import Any, cast

import jwt
import pytest

from broker.core.models import (
    ACCEPTED_TERMS_AND_POLICIES,
    CONTROLLED_ACCESS_GRANTS,
    REGISTERED_ACCESS_DOI,
    RESEARCHER_STATUS,
    VISA_TYP,
    Reason,
)
from broker.core.verify import Verifier
from broker.dac.grants import GrantRequest
from broker.dac.services import DacServices
from broker.keys.ring import KeyRing
from broker.trust.config import own_jwks_url
from broker.visas.minting import VisaMinter, record_of_jti, revocation_check
from tests.dac.conftest import DAY, SOURCE_A, SOURCE_B, Clock
from tests.support.legacy_store import Store
from tests.visas.conftest import ISSUER


def _minter(ring: KeyRing, svc: DacServices, clock: Clock, lifetime: int | None = None) -> VisaMinter:
    return VisaMinter(ring, ISSUER, svc.directory, svc.grants, svc.registered, lifetime_seconds=lifetime, clock=clock)


def _claims(token: str) -> tuple[dict[str, object], dict[str, object]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def test_ga16_grant_visa_fields_exact(ring: KeyRing, svc: DacServices, clock: Clock) -> None:
    now = int(clock())
    grant = svc.grants.grant("chair-a", GrantRequest("researcher", "A-7/x", end=now + 30 * DAY))
    clock.advance(100)
    (token,) = _minter(ring, svc, clock).tokens("researcher")
    header, claims = _claims(token)
    assert header == {"alg": "ES256", "kid": ring.signing_key().kid, "typ": VISA_TYP, "jku": own_jwks_url(ISSUER)}
    assert set(claims) == {"iss", "sub", "iat", "exp", "jti", "ga4gh_visa_v1"}
    assert (claims["iss"], claims["sub"], claims["iat"], claims["exp"]) == (
        ISSUER,
        "researcher",
        now + 100,
        now + 100 + 3600,
    )
    assert claims["ga4gh_visa_v1"] == {
        "type": CONTROLLED_ACCESS_GRANTS,
        "asserted": grant.granted_at,
        "value": "https://broker.example/datasets/A-7%2Fx",
        "source": SOURCE_A,
        "by": "dac",
    }
    assert record_of_jti(str(claims["jti"])) == grant.id


def test_exp_is_clamped_to_grant_end(ring: KeyRing, svc: DacServices, clock: Clock) -> None:
    now = int(clock())
    svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=now + 600))
    svc.grants.grant("admin", GrantRequest("researcher", "EGAD-B1", end=now + 30 * DAY))
    exps = {}
    for token in _minter(ring, svc, clock, lifetime=1800).tokens("researcher"):
        _, claims = _claims(token)
        exps[claims["ga4gh_visa_v1"]["source"]] = claims["exp"]  # type: ignore[index]
    assert exps == {SOURCE_A: now + 600, SOURCE_B: now + 1800}


def test_registered_access_visas(ring: KeyRing, svc: DacServices, clock: Clock) -> None:
    svc.registered.accept_terms("researcher")
    svc.registered.grant_status("member-b", "researcher", dac="B")
    svc.registered.vouch("researcher", "researcher-2")
    visas: list[dict[str, Any]] = [
        cast(dict[str, Any], _claims(t)[1]["ga4gh_visa_v1"]) for t in _minter(ring, svc, clock).tokens("researcher")
    ]
    objects = sorted(visas, key=lambda o: str(o["type"]))
    asserted = int(clock())
    assert objects == [
        {
            "type": ACCEPTED_TERMS_AND_POLICIES,
            "asserted": asserted,
            "value": REGISTERED_ACCESS_DOI,
            "source": "https://broker.example",
            "by": "self",
        },
        {
            "type": RESEARCHER_STATUS,
            "asserted": asserted,
            "value": REGISTERED_ACCESS_DOI,
            "source": SOURCE_B,
            "by": "so",
        },
    ]
    (peer,) = _minter(ring, svc, clock).tokens("researcher-2")
    assert _claims(peer)[1]["ga4gh_visa_v1"] == {
        "type": RESEARCHER_STATUS,
        "asserted": asserted,
        "value": REGISTERED_ACCESS_DOI,
        "source": SOURCE_B,
        "by": "peer",
    }


def test_minted_visas_verify_and_revocation_refuses_them(
    ring: KeyRing, svc: DacServices, clock: Clock, store: Store, verifier: Verifier
) -> None:
    grant = svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=int(clock()) + DAY))
    svc.registered.accept_terms("researcher")
    tokens = _minter(ring, svc, clock).tokens("researcher")
    checked = Verifier(verifier.trust, verifier.resolver, verifier.limits, revoked=revocation_check(store, clock))
    result = checked.verify_visas(tokens)
    assert len(result.accepted) == 2 and result.rejected == ()
    svc.grants.revoke("member-a", grant.id, "misuse")
    result = checked.verify_visas(tokens)
    assert [r.reason for r in result.rejected] == [Reason.REVOKED]
    assert [v.visa.type for v in result.accepted] == [ACCEPTED_TERMS_AND_POLICIES]
    assert _minter(ring, svc, clock).tokens("researcher") != tokens  # the revoked grant mints nothing now
    assert len(_minter(ring, svc, clock).tokens("researcher")) == 1


@pytest.mark.parametrize("jti", ["", "nodot", ".x", "x.", None])
def test_record_of_jti_only_for_our_shape(jti: object) -> None:
    assert record_of_jti(jti) is None  # type: ignore[arg-type]


def test_revocation_check_ignores_unknown_records(store: Store) -> None:
    assert revocation_check(store)("someone-elses-id.abc") is False


def test_minted_visa_is_reused_while_the_record_is_unchanged_and_half_its_life_is_left(
    ring: KeyRing, svc: DacServices, clock: Clock
) -> None:
    """Repeated passports carry the same JWS (verifier caches keyed by the token then hit); past
    half its lifetime, or once the grant is renewed or revoked, the visa is minted afresh or not at all."""
    now = int(clock())
    grant = svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=now + 30 * DAY))
    minter = _minter(ring, svc, clock, lifetime=3600)
    (first,) = minter.tokens("researcher")
    clock.advance(1000)
    assert minter.tokens("researcher") == [first]  # 2600 s of 3600 left: the same visa
    clock.advance(900)
    (second,) = minter.tokens("researcher")  # 1700 s left, under half: a fresh one
    assert second != first and _claims(second)[1]["exp"] == int(clock()) + 3600
    svc.grants.renew("member-a", grant.id, end=int(clock()) + 60 * DAY)
    (renewed,) = minter.tokens("researcher")
    assert renewed != second  # the record changed: minted again
    svc.grants.revoke("member-a", grant.id, reason="test")
    assert minter.tokens("researcher") == []  # revoked: nothing, however fresh the last visa was
