"""broker.core.verify.Verifier: every check of the clearinghouse, with real keys and a real resolver.

The threat-model items have their own files (test_threat_jwt.py, test_verify_threat_ga.py);
the spec's vectors are in test_verify_vectors.py. Here: each rule of the module docstring.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from broker.core.cache import VerifiedCache
from broker.core.limits import LimitSettings
from broker.core.models import PassportResult, Reason, Rejection, Visa
from broker.core.verify import Verifier, effective_exp
from tests.support.forge import (
    BONA_FIDE,
    DROP,
    NOW,
    Signer,
    TestKey,
    forge,
    make_verifier,
    trust_config,
    visa_object,
)

ISS = "https://issuer.test/"
BROKER = "https://broker2.test/"
CUSTOM = "https://example.org/passportVisaTypes/researcherStudies"


@pytest.fixture(scope="module")
def issuer() -> Signer:
    return Signer(ISS, TestKey.generate("ES256", "issuer-k1"), ISS + "jwks.json")


@pytest.fixture(scope="module")
def broker() -> Signer:
    return Signer(BROKER, TestKey.generate("RS256", "broker-k1"))


@pytest.fixture(scope="module")
def stranger() -> Signer:
    return Signer("https://stranger.test/", TestKey.generate("ES256", "stranger-k1"), "https://stranger.test/jwks.json")


@pytest.fixture()
def verifier(issuer: Signer, broker: Signer) -> Verifier:
    return make_verifier(trust_config([issuer], [broker]))


def rejected(verdict: Visa | Rejection, reason: Reason) -> Rejection:
    assert isinstance(verdict, Rejection), f"accepted, expected {reason}"
    assert verdict.reason is reason, f"{verdict.reason}: {verdict.detail}"
    return verdict


def passport_error(result: PassportResult, reason: Reason) -> Rejection:
    assert result.error is not None, "passport accepted"
    assert result.error.reason is reason, f"{result.error.reason}: {result.error.detail}"
    assert result.accepted == () and result.rejected == ()
    return result.error


# ---------------------------------------------------------------------- a good visa and passport


def test_good_visa_is_accepted_with_its_claims(verifier: Verifier, issuer: Signer) -> None:
    token = issuer.visa("alice", visa_object(), jti="v-1")
    visa = verifier.verify_visa(token)
    assert isinstance(visa, Visa)
    assert (visa.iss, visa.sub, visa.iat, visa.exp, visa.jti, visa.kid) == (
        ISS,
        "alice",
        NOW - 60,
        NOW + 3600,
        "v-1",
        "issuer-k1",
    )
    assert visa.raw == token
    assert visa.visa.type == "ControlledAccessGrants" and visa.visa.by == "dac" and visa.visa.conditions is None


def test_passport_judges_each_visa_alone(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    good = issuer.visa()
    no_by = issuer.visa(visa=visa_object(by=None))
    result = verifier.verify_passport(broker.passport([good, no_by, "junk", good]))
    assert result.ok and result.iss == BROKER and result.sub == "alice" and result.exp == NOW + 600
    assert [v.raw for v in result.accepted] == [good, good]
    assert [(r.index, r.reason) for r in result.rejected] == [(1, Reason.BY_REQUIRED), (2, Reason.MALFORMED)]
    assert result.rejected[0].iss == ISS and result.rejected[0].type == "ControlledAccessGrants"
    assert result.claims["jti"].startswith("passport-")


def test_empty_passport_is_fine(verifier: Verifier, broker: Signer) -> None:
    result = verifier.verify_passport(broker.passport([]))
    assert result.ok and result.accepted == () and result.rejected == ()


def test_verify_visas_userinfo_flow(verifier: Verifier, issuer: Signer) -> None:
    result = verifier.verify_visas([issuer.visa(), 12, issuer.visa(sub="bob")])  # type: ignore[list-item]
    assert result.ok and [v.sub for v in result.accepted] == ["alice", "bob"]
    assert [(r.index, r.reason) for r in result.rejected] == [(1, Reason.MALFORMED)]
    assert verifier.verify_visas("not a list").error.reason is Reason.BAD_CLAIM  # type: ignore[arg-type, union-attr]
    too_many = verifier.verify_visas([issuer.visa()] * 201)
    passport_error(too_many, Reason.TOO_MANY_VISAS)


# ---------------------------------------------------------------------- typ per token class


@pytest.mark.parametrize(
    "typ",
    [
        None,
        "vnd.ga4gh.visa+jwt",
        "JWT",
        "jwt",
        "application/vnd.ga4gh.visa+jwt",
        "VND.GA4GH.VISA+JWT",
        "application/JWT",
    ],
)
def test_visa_typ_accepted(verifier: Verifier, issuer: Signer, typ: str | None) -> None:
    assert isinstance(verifier.verify_visa(issuer.visa(header=issuer.header(typ=typ))), Visa)


@pytest.mark.parametrize(
    "typ",
    [
        "vnd.ga4gh.passport+jwt",
        "at+jwt",
        "application/at+jwt",
        "JOSE",
        "",
        "id_token",
        "vnd.ga4gh.visa+jwt ",
        "urn:ga4gh:params:oauth:token-type:passport",
    ],
)
def test_visa_typ_confusion_refused(verifier: Verifier, issuer: Signer, typ: str) -> None:
    rejected(verifier.verify_visa(issuer.visa(header=issuer.header(typ=typ))), Reason.BAD_TYP)


def test_passport_presented_as_visa_is_type_confusion(verifier: Verifier, issuer: Signer) -> None:
    """Even with a visa typ, a token carrying ga4gh_passport_v1 is a passport."""
    rejected(verifier.verify_visa(issuer.visa(ga4gh_passport_v1=[])), Reason.BAD_TYP)


@pytest.mark.parametrize(
    "typ",
    [
        None,
        "JWT",
        "vnd.ga4gh.visa+jwt",
        "at+jwt",
        "application/vnd.ga4gh.passport+jwt",
        "VND.GA4GH.PASSPORT+JWT",
        "urn:ga4gh:params:oauth:token-type:passport",
    ],
)
def test_passport_typ_must_be_exact(verifier: Verifier, broker: Signer, typ: str | None) -> None:
    header: dict[str, Any] = {"alg": "RS256", "kid": "broker-k1"}
    if typ is not None:
        header["typ"] = typ
    passport_error(verifier.verify_passport(broker.passport([], header=header)), Reason.BAD_TYP)


def test_passport_must_not_carry_a_visa_claim(verifier: Verifier, broker: Signer) -> None:
    passport_error(verifier.verify_passport(broker.passport([], ga4gh_visa_v1=visa_object())), Reason.BAD_TYP)


# ---------------------------------------------------------------------- visa form


def test_access_token_form_is_recognised_and_refused(verifier: Verifier, issuer: Signer) -> None:
    signer = Signer(ISS, issuer.key, None)  # no jku
    token = signer.visa(header=signer.header(typ="JWT"), scope="openid ga4gh_passport_v1")
    verdict = rejected(verifier.verify_visa(token), Reason.ACCESS_TOKEN_FORM)
    assert "poll" in verdict.detail


def test_document_token_must_not_have_openid_scope(verifier: Verifier, issuer: Signer) -> None:
    rejected(verifier.verify_visa(issuer.visa(scope="openid")), Reason.BAD_CLAIM)
    assert isinstance(verifier.verify_visa(issuer.visa(scope="ga4gh_passport_v1 openidish")), Visa)
    rejected(verifier.verify_visa(issuer.visa(scope=["openid"])), Reason.BAD_CLAIM)


def test_visa_without_jku_or_scope_is_refused(verifier: Verifier, issuer: Signer) -> None:
    rejected(verifier.verify_visa(Signer(ISS, issuer.key, None).visa()), Reason.JKU_MISSING)


# ---------------------------------------------------------------------- claims


@pytest.mark.parametrize("claim", ["iss", "sub", "iat", "exp", "jti", "ga4gh_visa_v1"])
def test_missing_visa_claim(verifier: Verifier, issuer: Signer, claim: str) -> None:
    rejected(verifier.verify_visa(issuer.visa(**{claim: DROP})), Reason.MISSING_CLAIM)


@pytest.mark.parametrize(
    "claim,value",
    [
        ("sub", 5),
        ("sub", ""),
        ("sub", ["alice"]),
        ("jti", {}),
        ("jti", 7),
        ("iss", ["https://issuer.test/"]),
        ("iat", "1700000000"),
        ("iat", 1.5),
        ("iat", True),
        ("exp", None),
        ("exp", -5),
        ("exp", 10**20),
        ("nbf", "0"),
        ("ga4gh_visa_v1", []),
        ("ga4gh_visa_v1", "x"),
        ("aud", 5),
        ("aud", []),
        ("aud", [1]),
    ],
)
def test_wrong_claim_type(verifier: Verifier, issuer: Signer, claim: str, value: Any) -> None:
    verdict = verifier.verify_visa(issuer.visa(**{claim: value}))
    expected = Reason.BAD_CLAIM
    if claim == "iss":  # not a string: cannot even be looked up as an issuer
        expected = Reason.BAD_CLAIM
    rejected(verdict, expected)


@pytest.mark.parametrize("member", ["type", "asserted", "value", "source"])
def test_missing_visa_object_member(verifier: Verifier, issuer: Signer, member: str) -> None:
    obj = visa_object()
    del obj[member]
    rejected(verifier.verify_visa(issuer.visa(visa=obj)), Reason.MISSING_CLAIM)


@pytest.mark.parametrize(
    "member,value",
    [
        ("type", 1),
        ("value", 1),
        ("value", ""),
        ("source", None),
        ("asserted", "1700000000"),
        ("asserted", 0),
        ("asserted", -1),
        ("asserted", True),
        ("asserted", 1.5),
        ("by", "dacs"),
        ("by", "DAC"),
        ("by", 1),
        ("by", ""),
        ("conditions", "x"),
        ("conditions", [[]]),
        ("conditions", [[{"type": "AffiliationAndRole"}]]),
    ],
)
def test_wrong_visa_object_member(verifier: Verifier, issuer: Signer, member: str, value: Any) -> None:
    rejected(verifier.verify_visa(issuer.visa(visa=visa_object(**{member: value}))), Reason.BAD_CLAIM)


def test_null_by_is_not_absent_by(verifier: Verifier, issuer: Signer) -> None:
    obj = visa_object(type="ResearcherStatus", value=BONA_FIDE)
    obj["by"] = None
    rejected(verifier.verify_visa(issuer.visa(visa=obj)), Reason.BAD_CLAIM)


def test_unknown_visa_object_members_are_ignored(verifier: Verifier, issuer: Signer) -> None:
    assert isinstance(verifier.verify_visa(issuer.visa(visa=visa_object(expires=1, extra={"a": 1}))), Visa)


def test_asserted_in_the_future(verifier: Verifier, issuer: Signer) -> None:
    rejected(verifier.verify_visa(issuer.visa(visa=visa_object(asserted=NOW + 61))), Reason.ISSUED_IN_FUTURE)
    assert isinstance(verifier.verify_visa(issuer.visa(visa=visa_object(asserted=NOW + 60))), Visa)


@pytest.mark.parametrize("visa_type", ["AcceptedTermsAndPolicies", "ControlledAccessGrants"])
def test_by_required(verifier: Verifier, issuer: Signer, visa_type: str) -> None:
    obj = visa_object(type=visa_type, value=BONA_FIDE, by=None)
    rejected(verifier.verify_visa(issuer.visa(visa=obj)), Reason.BY_REQUIRED)


@pytest.mark.parametrize(
    "visa_type,value",
    [
        ("ResearcherStatus", BONA_FIDE),
        ("AffiliationAndRole", "faculty@uni.example"),
        ("LinkedIdentities", "10001,https%3A%2F%2Fissuer.example1.org%2Foidc"),
    ],
)
def test_by_optional_elsewhere(verifier: Verifier, issuer: Signer, visa_type: str, value: str) -> None:
    visa = verifier.verify_visa(issuer.visa(visa=visa_object(type=visa_type, value=value, by=None)))
    assert isinstance(visa, Visa) and visa.visa.by is None


def test_affiliation_needs_an_at(verifier: Verifier, issuer: Signer) -> None:
    obj = visa_object(type="AffiliationAndRole", value="faculty", by="so")
    rejected(verifier.verify_visa(issuer.visa(visa=obj)), Reason.BAD_CLAIM)


# ---------------------------------------------------------------------- URL claims and custom types


@pytest.mark.parametrize("where", ["source", "value", "type"])
def test_url_claims_at_most_255(verifier: Verifier, issuer: Signer, where: str) -> None:
    url = "https://x.example/" + "a" * (255 - len("https://x.example/"))
    long = url + "a"
    configured = make_verifier(trust_config([issuer], visa_types={ISS: frozenset({url, long, "ResearcherStatus"})}))
    fields: dict[str, Any] = {"type": "ResearcherStatus", "value": BONA_FIDE, "by": "so"}
    fields[where] = url
    assert isinstance(configured.verify_visa(issuer.visa(visa=visa_object(**fields))), Visa)
    fields[where] = long
    rejected(configured.verify_visa(issuer.visa(visa=visa_object(**fields))), Reason.URL_TOO_LONG)


@pytest.mark.parametrize(
    "source",
    ["ega", "ftp://x.example/", "https://", "https://a b", "https:// x", "//x.example", "https://x.example/\n"],
)
def test_source_must_be_a_url(verifier: Verifier, issuer: Signer, source: str) -> None:
    rejected(verifier.verify_visa(issuer.visa(visa=visa_object(source=source))), Reason.BAD_CLAIM)


@pytest.mark.parametrize("visa_type", ["AcceptedTermsAndPolicies", "ResearcherStatus", "ControlledAccessGrants"])
def test_url_typed_values_must_be_urls(verifier: Verifier, issuer: Signer, visa_type: str) -> None:
    rejected(verifier.verify_visa(issuer.visa(visa=visa_object(type=visa_type, value="EGAD0001"))), Reason.BAD_CLAIM)


def test_custom_type_must_be_a_url(verifier: Verifier, issuer: Signer) -> None:
    rejected(verifier.verify_visa(issuer.visa(visa=visa_object(type="researcherStudies"))), Reason.BAD_CLAIM)


def test_custom_type_not_configured_is_ignored(verifier: Verifier, issuer: Signer) -> None:
    rejected(verifier.verify_visa(issuer.visa(visa=visa_object(type=CUSTOM))), Reason.UNKNOWN_CUSTOM_TYPE)


def test_custom_type_configured_for_the_issuer_is_accepted(issuer: Signer) -> None:
    verifier = make_verifier(trust_config([issuer], visa_types={ISS: frozenset({CUSTOM})}))
    assert verifier.verify_visa(issuer.visa(visa=visa_object(type=CUSTOM))).visa.type == CUSTOM  # type: ignore[union-attr]
    rejected(verifier.verify_visa(issuer.visa(visa=visa_object())), Reason.TYPE_NOT_ACCEPTED)


def test_issuer_sources_allow_list(issuer: Signer) -> None:
    verifier = make_verifier(trust_config([issuer], sources={ISS: frozenset({"https://ega.example/dacs/EGAC0001"})}))
    assert isinstance(verifier.verify_visa(issuer.visa()), Visa)
    for source in (
        "https://ega.example/dacs/EGAC0001/",
        "https://EGA.example/dacs/EGAC0001",
        "https://ega.example/dacs/EGAC00011",
    ):
        rejected(verifier.verify_visa(issuer.visa(visa=visa_object(source=source))), Reason.SOURCE_NOT_ACCEPTED)


# ---------------------------------------------------------------------- trust: C9


def test_visa_trust_comes_from_its_own_issuer(verifier: Verifier, broker: Signer, stranger: Signer) -> None:
    """A trusted broker relaying a visa from an untrusted issuer does not make it trusted (C9)."""
    result = verifier.verify_passport(broker.passport([stranger.visa()]))
    assert result.ok and result.accepted == ()
    assert result.rejected[0].reason is Reason.UNTRUSTED_ISSUER


def test_broker_is_not_a_visa_issuer_unless_configured(verifier: Verifier, broker: Signer) -> None:
    as_issuer = Signer(BROKER, broker.key, BROKER + "jwks.json")
    result = verifier.verify_passport(broker.passport([as_issuer.visa()]))
    assert result.rejected[0].reason is Reason.UNTRUSTED_ISSUER


def test_passport_from_untrusted_broker(verifier: Verifier, issuer: Signer, stranger: Signer) -> None:
    passport_error(verifier.verify_passport(stranger.passport([issuer.visa()])), Reason.UNTRUSTED_ISSUER)
    # a visa issuer is not a broker either
    passport_error(verifier.verify_passport(issuer.passport([issuer.visa()])), Reason.UNTRUSTED_ISSUER)


def test_passport_signed_with_another_key(verifier: Verifier, broker: Signer, stranger: Signer) -> None:
    forged = Signer(BROKER, TestKey.generate("RS256", "broker-k1"))
    passport_error(verifier.verify_passport(forged.passport([])), Reason.BAD_SIGNATURE)


# ---------------------------------------------------------------------- passport claims and limits


@pytest.mark.parametrize("claim", ["iss", "sub", "iat", "exp", "jti", "ga4gh_passport_v1"])
def test_missing_passport_claim(verifier: Verifier, broker: Signer, claim: str) -> None:
    passport_error(verifier.verify_passport(broker.passport([], **{claim: DROP})), Reason.MISSING_CLAIM)


@pytest.mark.parametrize(
    "claim,value",
    [
        ("ga4gh_passport_v1", "a.b.c"),
        ("ga4gh_passport_v1", [1]),
        ("ga4gh_passport_v1", {"a": 1}),
        ("ga4gh_passport_v1", [None]),
        ("sub", 1),
        ("jti", ""),
        ("exp", "1"),
        ("aud", 3),
    ],
)
def test_bad_passport_claim(verifier: Verifier, broker: Signer, claim: str, value: Any) -> None:
    passport_error(verifier.verify_passport(broker.passport([], **{claim: value})), Reason.BAD_CLAIM)


def test_passport_visa_count_limit(issuer: Signer, broker: Signer) -> None:
    limits = LimitSettings(max_visas_per_passport=3)
    verifier = make_verifier(trust_config([issuer], [broker]), limits=limits)
    visa = issuer.visa()
    assert len(verifier.verify_passport(broker.passport([visa] * 3)).accepted) == 3
    passport_error(verifier.verify_passport(broker.passport([visa] * 4)), Reason.TOO_MANY_VISAS)


def test_passport_and_visa_size_limits(issuer: Signer, broker: Signer) -> None:
    limits = LimitSettings(max_passport_bytes=4000, max_visa_bytes=900)
    verifier = make_verifier(trust_config([issuer], [broker]), limits=limits)
    small = issuer.visa()
    big = issuer.visa(padding="x" * 600)
    assert len(small) <= 900 < len(big)
    result = verifier.verify_passport(broker.passport([small, big]))
    assert len(result.accepted) == 1 and result.rejected[0].reason is Reason.TOO_LARGE
    passport_error(verifier.verify_passport(broker.passport([small] * 6)), Reason.TOO_LARGE)


def test_passport_audience(verifier: Verifier, broker: Signer) -> None:
    for aud in ("https://ch.example", ["https://other.example", "https://ch.example"]):
        token = broker.passport([], aud=aud)
        assert verifier.verify_passport(token, audience="https://ch.example").ok
        passport_error(verifier.verify_passport(token, audience="https://ch.example/"), Reason.BAD_AUDIENCE)
        assert verifier.verify_passport(token).ok  # no audience given: only its shape is checked
    assert verifier.verify_passport(broker.passport([]), audience="https://ch.example").ok  # aud is optional


def test_visa_audience(verifier: Verifier, issuer: Signer) -> None:
    """RFC 7519 4.1.3: a visa naming an audience is only accepted for that audience."""
    token = issuer.visa(aud="https://ch.example")
    rejected(verifier.verify_visa(token), Reason.BAD_AUDIENCE)
    rejected(verifier.verify_visa(token, audience="https://other.example"), Reason.BAD_AUDIENCE)
    assert isinstance(verifier.verify_visa(token, audience="https://ch.example"), Visa)


# ---------------------------------------------------------------------- revocation


def test_revoked_visa_and_passport(issuer: Signer, broker: Signer) -> None:
    revoked = {"visa-bad", "passport-bad"}
    verifier = make_verifier(trust_config([issuer], [broker]), revoked=revoked.__contains__)
    verdict = rejected(verifier.verify_visa(issuer.visa(jti="visa-bad")), Reason.REVOKED)
    assert verdict.jti == "visa-bad" and verdict.iss == ISS
    assert isinstance(verifier.verify_visa(issuer.visa(jti="visa-good")), Visa)
    passport_error(verifier.verify_passport(broker.passport([], jti="passport-bad")), Reason.REVOKED)


# ---------------------------------------------------------------------- conditions (C18)


def _conditioned(value: str = "const:faculty@uni.example") -> dict[str, Any]:
    return visa_object(
        value="https://ega.example/datasets/EGAD0002",
        conditions=[
            [
                {"type": "AffiliationAndRole", "value": value, "by": "const:so"},
            ]
        ],
    )


def _affiliation(by: str = "so") -> dict[str, Any]:
    return visa_object(type="AffiliationAndRole", value="faculty@uni.example", source="https://uni.example/", by=by)


def test_conditions_met_by_an_unconditioned_visa(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    result = verifier.verify_passport(
        broker.passport([issuer.visa(visa=_conditioned()), issuer.visa(visa=_affiliation())])
    )
    assert len(result.accepted) == 2 and result.rejected == ()
    assert result.accepted[0].conditioned


def test_conditions_unmet(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    result = verifier.verify_passport(
        broker.passport([issuer.visa(visa=_conditioned()), issuer.visa(visa=_affiliation(by="peer"))])
    )
    assert [v.visa.type for v in result.accepted] == ["AffiliationAndRole"]
    assert (result.rejected[0].index, result.rejected[0].reason) == (0, Reason.CONDITIONS_UNMET)


def test_conditions_not_met_by_a_refused_visa(
    verifier: Verifier, issuer: Signer, broker: Signer, stranger: Signer
) -> None:
    expired = issuer.visa(visa=_affiliation(), exp=NOW - 3600)
    untrusted = stranger.visa(visa=_affiliation())
    result = verifier.verify_passport(broker.passport([issuer.visa(visa=_conditioned()), expired, untrusted]))
    assert result.accepted == ()
    assert [r.reason for r in result.rejected] == [Reason.CONDITIONS_UNMET, Reason.EXPIRED, Reason.UNTRUSTED_ISSUER]


def test_conditions_not_met_by_another_conditioned_visa(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    satisfier = _affiliation()
    satisfier["conditions"] = [[{"type": "ControlledAccessGrants", "value": "pattern:*"}]]
    result = verifier.verify_passport(broker.passport([issuer.visa(visa=_conditioned()), issuer.visa(visa=satisfier)]))
    assert {r.reason for r in result.rejected} == {Reason.CONDITIONS_UNMET}


def test_conditions_in_verify_visas_too(verifier: Verifier, issuer: Signer) -> None:
    result = verifier.verify_visas([issuer.visa(visa=_conditioned())])
    assert result.rejected[0].reason is Reason.CONDITIONS_UNMET


def test_conditions_across_identities_need_a_link(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    other_identity = issuer.visa("bob", visa=_affiliation())
    result = verifier.verify_passport(broker.passport([issuer.visa("alice", visa=_conditioned()), other_identity]))
    assert result.rejected[0].reason is Reason.CONDITIONS_UNMET
    link = issuer.visa(
        "alice",
        visa=visa_object(type="LinkedIdentities", value="bob,https%3A%2F%2Fissuer.test%2F", source=ISS, by="system"),
    )
    conditioned = issuer.visa("alice", visa=_conditioned())
    linked = verifier.verify_passport(broker.passport([conditioned, other_identity, link]))
    assert linked.rejected == () and len(linked.accepted) == 3


def test_c21_relies_on_records_what_met_the_conditions(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    """Each accepted conditioned visa maps to its satisfier and the link it needed; expiry is their minimum."""
    conditioned = issuer.visa("alice", visa=_conditioned(), exp=NOW + 3000, jti="grant")
    satisfier = issuer.visa("bob", visa=_affiliation(), exp=NOW + 1000, jti="affiliation")
    link = issuer.visa(
        "alice",
        visa=visa_object(type="LinkedIdentities", value="bob,https%3A%2F%2Fissuer.test%2F", source=ISS, by="system"),
        exp=NOW + 2000,
        jti="link",
    )
    unmet = issuer.visa("alice", visa=_conditioned("const:nobody@uni.example"), jti="unmet")
    plain = issuer.visa("alice", exp=NOW + 500, jti="plain")
    for result in (
        verifier.verify_passport(broker.passport([conditioned, satisfier, link, unmet, plain])),
        verifier.verify_visas([conditioned, satisfier, link, unmet, plain]),
    ):
        by_jti = {v.jti: v for v in result.accepted}
        assert sorted(by_jti) == ["affiliation", "grant", "link", "plain"]
        assert [(r.jti, r.reason) for r in result.rejected] == [("unmet", Reason.CONDITIONS_UNMET)]
        assert result.relies_on == {by_jti["grant"]: (by_jti["affiliation"], by_jti["link"])}
        assert effective_exp(result, by_jti["grant"]) == NOW + 1000
        assert effective_exp(result, by_jti["link"]) == NOW + 2000
        assert effective_exp(result, by_jti["plain"]) == NOW + 500


def test_c21_effective_exp_of_a_visa_the_verifier_did_not_accept_is_an_error(
    verifier: Verifier, issuer: Signer
) -> None:
    refused = verifier.verify_visa(issuer.visa(visa=_conditioned()))
    assert isinstance(refused, Visa) and refused.conditioned  # alone: conditions not yet judged
    result = verifier.verify_visas([issuer.visa(visa=_conditioned())])
    with pytest.raises(KeyError):
        effective_exp(result, refused)


# ---------------------------------------------------------------------- nothing raises


class ExplodingResolver:
    def visa_key(self, *args: Any) -> Any:
        raise RuntimeError("boom")

    def broker_key(self, *args: Any) -> Any:
        raise ZeroDivisionError("bang")


def test_unexpected_errors_become_rejections(issuer: Signer, broker: Signer, caplog: pytest.LogCaptureFixture) -> None:
    trust = trust_config([issuer], [broker])
    verifier = Verifier(trust, ExplodingResolver(), LimitSettings(), clock=lambda: NOW)
    token = issuer.visa(secret_marker="do-not-log-me")
    with caplog.at_level(logging.ERROR, logger="broker.core.verify"):
        verdict = rejected(verifier.verify_visa(token), Reason.MALFORMED)
        result = verifier.verify_passport(broker.passport([token]))
        listed = verifier.verify_visas([token])
    assert "RuntimeError" in verdict.detail
    passport_error(result, Reason.MALFORMED)
    assert listed.rejected[0].reason is Reason.MALFORMED
    assert "RuntimeError" in caplog.text and "ZeroDivisionError" in caplog.text
    assert token not in caplog.text and "do-not-log-me" not in caplog.text


@pytest.mark.parametrize("token", [None, 5, b"a.b.c", ["a"], {"t": 1}])
def test_non_string_tokens_are_refused(verifier: Verifier, token: Any) -> None:
    rejected(verifier.verify_visa(token), Reason.MALFORMED)
    passport_error(verifier.verify_passport(token), Reason.MALFORMED)


# ---------------------------------------------------------------------- the cache


@pytest.fixture()
def cached(issuer: Signer, broker: Signer) -> tuple[Verifier, VerifiedCache, dict[str, float]]:
    clock = {"now": float(NOW)}
    cache = VerifiedCache(1000)
    verifier = make_verifier(trust_config([issuer], [broker]), cache=cache, now=lambda: clock["now"])
    return verifier, cache, clock


def test_cache_hit_gives_the_same_answer(cached: Any, issuer: Signer, broker: Signer) -> None:
    verifier, cache, _ = cached
    token = issuer.visa()
    first = verifier.verify_visa(token)
    copy = (token + " ")[:-1]
    second = verifier.verify_visa(copy)
    assert first == second and second.raw is copy  # type: ignore[union-attr]
    assert cache.stats().hits == 1
    passport = broker.passport([token, "junk"])
    cold = verifier.verify_passport(passport)
    warm = verifier.verify_passport(passport)
    assert warm is cold and cache.stats().hits == 3  # the visa inside hit too, then the whole passport


def test_cached_visa_is_not_stored_with_its_text(cached: Any, issuer: Signer) -> None:
    verifier, cache, _ = cached
    verifier.verify_visa(issuer.visa())
    ((value, _expires, _jtis),) = cache._entries.values()
    assert value.raw == ""


def test_cache_entries_end_at_exp(cached: Any, issuer: Signer, broker: Signer) -> None:
    verifier, cache, clock = cached
    short = issuer.visa(exp=NOW + 100)
    passport = broker.passport([short, issuer.visa()])
    assert len(verifier.verify_passport(passport).accepted) == 2
    clock["now"] = NOW + 100  # the short visa's exp: within leeway it is still accepted cold
    result = verifier.verify_passport(passport)
    assert len(result.accepted) == 2 and cache.stats().hits == 1  # the long visa hit; the passport entry ended
    clock["now"] = NOW + 161
    result = verifier.verify_passport(passport)
    assert [r.reason for r in result.rejected] == [Reason.EXPIRED]


def test_revocation_evicts(cached: Any, issuer: Signer, broker: Signer) -> None:
    verifier, cache, _ = cached
    revoked: set[str] = set()
    verifier.revoked = revoked.__contains__
    token = issuer.visa(jti="to-revoke")
    passport = broker.passport([token])
    assert len(verifier.verify_passport(passport).accepted) == 1
    revoked.add("to-revoke")
    assert len(verifier.verify_passport(passport).accepted) == 1  # hits do not consult the list...
    assert cache.evict_jti("to-revoke") == 2  # ...revocation evicts: the visa and the passport
    assert verifier.verify_passport(passport).rejected[0].reason is Reason.REVOKED


def test_c21_cached_passport_ends_at_the_exp_of_a_condition_satisfier(
    cached: Any, issuer: Signer, broker: Signer
) -> None:
    verifier, _, clock = cached
    conditioned = issuer.visa(visa=_conditioned(), exp=NOW + 3600, jti="grant")
    satisfier = issuer.visa(visa=_affiliation(), exp=NOW + 100, jti="affiliation")
    passport = broker.passport([conditioned, satisfier])
    result = verifier.verify_passport(passport)
    assert result.rejected == () and [v.jti for v in result.relies_on[result.accepted[0]]] == ["affiliation"]
    assert verifier.verify_passport(passport) is result  # a hit
    clock["now"] = NOW + 100  # the satisfier's exp: the passport verdict has ended (re-checked cold)
    assert verifier.verify_passport(passport) is not result
    clock["now"] = NOW + 161  # past the leeway: the satisfier expired, so the grant's conditions are unmet
    late = verifier.verify_passport(passport)
    assert late.accepted == () and late.relies_on == {}
    assert [(r.jti, r.reason) for r in late.rejected] == [
        ("grant", Reason.CONDITIONS_UNMET),
        ("affiliation", Reason.EXPIRED),
    ]


def test_revoking_a_condition_satisfier_evicts_the_passport_that_relied_on_it(
    cached: Any, issuer: Signer, broker: Signer
) -> None:
    verifier, cache, _ = cached
    revoked: set[str] = set()
    verifier.revoked = revoked.__contains__
    passport = broker.passport(
        [issuer.visa(visa=_conditioned(), jti="grant"), issuer.visa(visa=_affiliation(), jti="rec-1.x7")]
    )
    assert len(verifier.verify_passport(passport).accepted) == 2
    revoked.add("rec-1.x7")
    assert cache.evict_jti_prefix("rec-1") == 2  # the satisfier's own entry and the passport verdict
    result = verifier.verify_passport(passport)
    assert result.accepted == ()
    assert [r.reason for r in result.rejected] == [Reason.CONDITIONS_UNMET, Reason.REVOKED]


def test_trust_change_misses(issuer: Signer, broker: Signer) -> None:
    cache = VerifiedCache(100)
    token = issuer.visa()
    assert isinstance(make_verifier(trust_config([issuer], [broker]), cache=cache).verify_visa(token), Visa)
    narrower = make_verifier(
        trust_config([issuer], [broker], sources={ISS: frozenset({"https://x.example/"})}), cache=cache
    )
    rejected(narrower.verify_visa(token), Reason.SOURCE_NOT_ACCEPTED)


def test_passport_with_transient_rejection_is_not_cached(issuer: Signer, broker: Signer) -> None:
    cache = VerifiedCache(100)
    verifier = make_verifier(trust_config([issuer], [broker]), cache=cache)
    unknown_kid = forge(issuer.header(kid="rotated-in-later"), {"iss": ISS}, issuer.key.private)
    result = verifier.verify_passport(broker.passport([issuer.visa(), unknown_kid]))
    assert result.rejected[0].reason is Reason.KEY_NOT_FOUND
    assert len(cache) == 1  # only the good visa; not the passport


def test_refused_passport_is_not_cached(issuer: Signer, broker: Signer) -> None:
    cache = VerifiedCache(100)
    verifier = make_verifier(trust_config([issuer], [broker]), cache=cache)
    passport_error(verifier.verify_passport(broker.passport([], exp=NOW - 3600)), Reason.EXPIRED)
    assert len(cache) == 0


def test_audience_is_part_of_the_passport_key(cached: Any, broker: Signer) -> None:
    verifier, _, _ = cached
    token = broker.passport([], aud="https://ch.example")
    assert verifier.verify_passport(token, audience="https://ch.example").ok
    passport_error(verifier.verify_passport(token, audience="https://other.example"), Reason.BAD_AUDIENCE)
