"""broker.core.issue: visas and passports signed by a real key ring, then verified by our verifier."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from broker.core.issue import IssueError, check_visa_object, mint_passport, mint_visa
from broker.core.jose import parse
from broker.core.models import PASSPORT_TYP, VISA_TYP, Visa, VisaObject
from broker.core.verify import Verifier
from broker.keys.ring import KeyRing
from broker.keys.settings import KeySettings
from broker.settings import Settings
from broker.trust.config import TrustConfig, own_jwks_url
from broker.trust.keyset import ResolvedKey
from tests.support.forge import BONA_FIDE, NOW, make_verifier
from tests.support.keys import open_ring
from tests.support.settings import unchecked

ISSUER = "https://broker.issue.test/"
GRANT = VisaObject(
    type="ControlledAccessGrants",
    asserted=NOW - 100,
    value="https://ega.example/datasets/EGAD1",
    source="https://ega.example/dacs/EGAC1",
    by="dac",
)


def ring_for(tmp_path: Path, alg: str = "ES256", lifetime: int = 86_400) -> KeyRing:
    # A ring whose promise may be shorter than the default token lifetimes: the loader would
    # refuse such a file, and the ring must still clamp what it signs.
    settings = unchecked(
        Settings(issuer=ISSUER, data_dir=str(tmp_path / alg)),
        keys=KeySettings(algorithm=alg, max_token_lifetime_seconds=lifetime),
    )
    ring = open_ring(settings, None, auto_maintain_seconds=None)  # file storage
    ring.maintain(now=NOW - 1000)
    return ring


def verifier_for(ring: KeyRing) -> Verifier:
    own = {kid: ResolvedKey(kid, alg, key) for kid, (alg, key) in ring.public_keys(now=NOW).items()}
    return make_verifier(TrustConfig(ISSUER, {}, {}, lambda: own))


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return ring_for(tmp_path_factory.mktemp("ring"))


def decoded(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    jws = parse(token, max_bytes=1 << 20, max_depth=32)
    return dict(jws.header), jws.payload


# ---------------------------------------------------------------------- visas


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_minted_visa_has_what_the_spec_wants_and_verifies(tmp_path: Path, alg: str) -> None:
    ring = ring_for(tmp_path, alg)
    token = mint_visa(ring, ISSUER, "alice", GRANT, NOW + 3600, now=NOW, jti="v-1")
    header, payload = decoded(token)
    assert header == {"alg": alg, "kid": ring.signing_key(now=NOW).kid, "typ": VISA_TYP, "jku": own_jwks_url(ISSUER)}
    assert payload == {
        "iss": ISSUER,
        "sub": "alice",
        "iat": NOW,
        "exp": NOW + 3600,
        "jti": "v-1",
        "ga4gh_visa_v1": GRANT.to_claim(),
    }
    assert "scope" not in payload
    visa = verifier_for(ring).verify_visa(token)
    assert isinstance(visa, Visa) and visa.visa == GRANT and visa.raw == token


def test_jti_defaults_to_a_fresh_random_id(ring: KeyRing) -> None:
    jtis = {decoded(mint_visa(ring, ISSUER, "alice", GRANT, NOW + 60, now=NOW))[1]["jti"] for _ in range(5)}
    assert len(jtis) == 5 and all(len(j) == 32 for j in jtis)


def test_exp_never_after_the_assertion_end(ring: KeyRing) -> None:
    token = mint_visa(ring, ISSUER, "alice", GRANT, NOW + 3600, now=NOW, assertion_end=NOW + 600)
    assert decoded(token)[1]["exp"] == NOW + 600
    token = mint_visa(ring, ISSUER, "alice", GRANT, NOW + 600, now=NOW, assertion_end=NOW + 3600)
    assert decoded(token)[1]["exp"] == NOW + 600


def test_exp_never_after_the_key_ring_promise(tmp_path: Path) -> None:
    """A visa must not outlive the publication of its key (keys.max_token_lifetime_seconds)."""
    ring = ring_for(tmp_path, lifetime=3600)
    assert decoded(mint_visa(ring, ISSUER, "alice", GRANT, NOW + 10 * 86_400, now=NOW))[1]["exp"] == NOW + 3600


@pytest.mark.parametrize("exp,end", [(NOW, None), (NOW - 1, None), (NOW + 60, NOW), (NOW + 60, NOW - 5)])
def test_expired_at_issue_is_refused(ring: KeyRing, exp: int, end: int | None) -> None:
    with pytest.raises(IssueError, match="expired"):
        mint_visa(ring, ISSUER, "alice", GRANT, exp, now=NOW, assertion_end=end)


@pytest.mark.parametrize(
    "change",
    [
        {"type": ""},
        {"type": "researcherStudies"},
        {"value": ""},
        {"source": "ega"},
        {"source": "https://x/" + "a" * 250},
        {"by": None},
        {"by": "DAC"},
        {"asserted": NOW + 10},
        {"asserted": 0},
        {"asserted": True},
        {"type": "AffiliationAndRole", "value": "faculty", "by": "so"},
        {"type": "ResearcherStatus", "value": "bona fide"},
        {"conditions": ((("value", "const:x"),),)},  # a clause without type
    ],
)
def test_bad_visa_objects_are_refused(ring: KeyRing, change: dict[str, Any]) -> None:
    visa = dataclasses.replace(GRANT, **change)
    with pytest.raises(IssueError):
        mint_visa(ring, ISSUER, "alice", visa, NOW + 60, now=NOW)


@pytest.mark.parametrize(
    "visa",
    [
        VisaObject("AcceptedTermsAndPolicies", NOW, BONA_FIDE, "https://elixir-europe.org/", "self"),
        VisaObject("ResearcherStatus", NOW, BONA_FIDE, "https://no.organization"),
        VisaObject("AffiliationAndRole", NOW, "public.citizen-scientist@no.organization", "https://no.organization"),
        VisaObject("LinkedIdentities", NOW, "10001,https%3A%2F%2Fissuer.example%2F", ISSUER, "system"),
        VisaObject("https://example.org/passportVisaTypes/researcherStudies", NOW, "anything", ISSUER),
        VisaObject(
            "ControlledAccessGrants",
            NOW,
            "https://ega.example/d",
            "https://ega.example/dac",
            "dac",
            conditions=(((("type", "AffiliationAndRole"), ("value", "pattern:faculty@*")),),),
        ),
    ],
)
def test_good_visa_objects_pass_the_check(visa: VisaObject) -> None:
    check_visa_object(visa, NOW)


def test_conditioned_visa_round_trips(ring: KeyRing) -> None:
    conditioned = dataclasses.replace(
        GRANT, conditions=(((("type", "AffiliationAndRole"), ("value", "const:faculty@uni.example")),),)
    )
    visa = verifier_for(ring).verify_visa(mint_visa(ring, ISSUER, "alice", conditioned, NOW + 60, now=NOW))
    assert isinstance(visa, Visa) and visa.visa.conditions == conditioned.conditions


@pytest.mark.parametrize("issuer,sub", [("", "alice"), (ISSUER, ""), (ISSUER, None)])
def test_issuer_and_sub_required(ring: KeyRing, issuer: str, sub: Any) -> None:
    with pytest.raises(IssueError):
        mint_visa(ring, issuer, sub, GRANT, NOW + 60, now=NOW)


# ---------------------------------------------------------------------- passports


def test_minted_passport_has_what_the_spec_wants_and_verifies(ring: KeyRing) -> None:
    visas = [mint_visa(ring, ISSUER, "alice", GRANT, NOW + 3600, now=NOW) for _ in range(3)]
    token = mint_passport(
        ring, ISSUER, "alice-ppid", visas, 600, audience="https://drs.example.com", now=NOW, jti="p-1"
    )
    header, payload = decoded(token)
    assert header == {"alg": "ES256", "kid": ring.signing_key(now=NOW).kid, "typ": PASSPORT_TYP}
    assert payload == {
        "iss": ISSUER,
        "sub": "alice-ppid",
        "iat": NOW,
        "exp": NOW + 600,
        "jti": "p-1",
        "aud": "https://drs.example.com",
        "ga4gh_passport_v1": visas,
    }
    result = verifier_for(ring).verify_passport(token, audience="https://drs.example.com")
    assert result.ok and [v.raw for v in result.accepted] == visas  # passed on byte for byte


def test_passport_audience_list_and_empty_visas(ring: KeyRing) -> None:
    token = mint_passport(ring, ISSUER, "alice", [], 600, audience=["a", "b"], now=NOW)
    assert decoded(token)[1]["aud"] == ["a", "b"] and decoded(token)[1]["ga4gh_passport_v1"] == []
    assert verifier_for(ring).verify_passport(token, audience="b").ok
    assert "aud" not in decoded(mint_passport(ring, ISSUER, "alice", [], 600, now=NOW))[1]


def test_passport_not_after_its_visas(ring: KeyRing) -> None:
    visas = [mint_visa(ring, ISSUER, "alice", GRANT, NOW + exp, now=NOW) for exp in (900, 300, 1200)]
    assert decoded(mint_passport(ring, ISSUER, "a", visas, 3600, now=NOW, not_after_visas=True))[1]["exp"] == NOW + 300
    assert decoded(mint_passport(ring, ISSUER, "a", visas, 3600, now=NOW))[1]["exp"] == NOW + 3600
    with pytest.raises(IssueError):
        mint_passport(ring, ISSUER, "a", ["not.a.jwt"], 3600, now=NOW, not_after_visas=True)


def test_passport_lifetime_clamped_to_the_key_ring_promise(tmp_path: Path) -> None:
    ring = ring_for(tmp_path, lifetime=900)
    assert decoded(mint_passport(ring, ISSUER, "a", [], 86_400, now=NOW))[1]["exp"] == NOW + 900


@pytest.mark.parametrize(
    "kwargs",
    [
        {"visas": "abc"},
        {"visas": [1]},
        {"visas": [""]},
        {"lifetime": 0},
        {"audience": []},
        {"audience": [""]},
        {"audience": ""},
        {"sub": ""},
    ],
)
def test_bad_passport_requests_are_refused(ring: KeyRing, kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"sub": "alice", "visas": [], "lifetime": 600, "audience": None}
    args.update(kwargs)
    with pytest.raises(IssueError):
        mint_passport(ring, ISSUER, args["sub"], args["visas"], args["lifetime"], audience=args["audience"], now=NOW)
