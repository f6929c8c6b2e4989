"""THREAT-MODEL section 2 (GA-01..GA-08): the GA4GH semantics the clearinghouse verifier enforces.

Policy-level halves of these items (dataset rules, requested TTLs) are the policy engine's;
what is asserted here is what the verifier itself must do: which visas it accepts, ignores
(EPM f) or refuses with the passport (EPM e), and that it never fetches a URL claim.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.core.cache import VerifiedCache
from broker.core.models import Reason, Rejection, Visa
from broker.core.verify import Verifier
from tests.support.forge import NOW, Signer, TestKey, make_verifier, trust_config, visa_object
from tests.support.jwks_server import JwksServer

ISS = "https://issuer.test/"
BROKER = "https://broker2.test/"
DAC = "https://ega.example/dacs/EGAC0001"


@pytest.fixture(scope="module")
def issuer() -> Signer:
    return Signer(ISS, TestKey.generate("ES256", "issuer-k1"), ISS + "jwks.json")


@pytest.fixture(scope="module")
def broker() -> Signer:
    return Signer(BROKER, TestKey.generate("ES256", "broker-k1"))


@pytest.fixture(scope="module")
def stranger() -> Signer:
    return Signer("https://stranger.test/", TestKey.generate("ES256", "s-k1"), "https://stranger.test/jwks.json")


@pytest.fixture()
def verifier(issuer: Signer, broker: Signer) -> Verifier:
    return make_verifier(trust_config([issuer], [broker]))


def reasons(result: Any) -> list[tuple[int | None, Reason]]:
    return [(r.index, r.reason) for r in result.rejected]


def grant(conditions: Any = None, **extra: Any) -> dict[str, Any]:
    obj = visa_object(value="https://ega.example/datasets/EGAD0002", **extra)
    if conditions is not None:
        obj["conditions"] = conditions
    return obj


def affiliation(**extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "type": "AffiliationAndRole",
        "value": "faculty@uni.example",
        "source": "https://uni.example/",
        "by": "so",
        **extra,
    }
    return visa_object(**fields)


FACULTY = [[{"type": "AffiliationAndRole", "value": "const:faculty@uni.example", "by": "const:so"}]]


# ---------------------------------------------------------------------- GA-01


def test_ga01_conditions_met_by_a_valid_trusted_visa(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    visas = [issuer.visa(visa=grant(FACULTY)), issuer.visa(visa=affiliation())]
    result = verifier.verify_passport(broker.passport(visas))
    assert reasons(result) == [] and len(result.accepted) == 2


@pytest.mark.parametrize(
    "conditions,reason",
    [
        (FACULTY, Reason.CONDITIONS_UNMET),  # no satisfier in the passport
        (
            [[{"type": "AffiliationAndRole", "value": "regex:faculty@.*"}]],
            Reason.CONDITIONS_UNMET,
        ),  # unsupported prefix
        ([[{"type": "AffiliationAndRole", "value": "faculty@uni.example"}]], Reason.CONDITIONS_UNMET),  # no prefix
        ([[{"type": "AffiliationAndRole"}]], Reason.BAD_CLAIM),  # malformed clause: type only
        (
            [[{"type": "AffiliationAndRole", "asserted": "const:1"}]],
            Reason.BAD_CLAIM,
        ),  # timestamps may not be constrained
        ([[]], Reason.BAD_CLAIM),  # empty alternative is not vacuously true
        ({"type": "AffiliationAndRole"}, Reason.BAD_CLAIM),  # not a DNF
    ],
    ids=["unmet", "regex-prefix", "no-prefix", "type-only", "asserted", "empty-and", "not-a-list"],
)
def test_ga01_conditioned_visa_ignored(
    verifier: Verifier, issuer: Signer, broker: Signer, conditions: Any, reason: Reason
) -> None:
    result = verifier.verify_passport(
        broker.passport([issuer.visa(visa=grant(conditions)), issuer.visa(visa=affiliation(by="peer"))])
    )
    assert result.ok and reasons(result) == [(0, reason)]


def test_ga01_satisfier_expired_or_untrusted_does_not_count(
    verifier: Verifier, issuer: Signer, broker: Signer, stranger: Signer
) -> None:
    for satisfier in (
        issuer.visa(visa=affiliation(), exp=NOW - 3600),
        stranger.visa(visa=affiliation()),
        issuer.visa("someone-else", visa=affiliation()),
    ):
        result = verifier.verify_passport(broker.passport([issuer.visa(visa=grant(FACULTY)), satisfier]))
        assert (0, Reason.CONDITIONS_UNMET) in reasons(result)


def test_ga01_empty_conditions_mean_none(verifier: Verifier, issuer: Signer) -> None:
    visa = verifier.verify_visa(issuer.visa(visa=grant([])))
    assert isinstance(visa, Visa) and not visa.conditioned


# ---------------------------------------------------------------------- GA-02


@pytest.mark.parametrize(
    "source",
    [
        DAC + "/",
        DAC.upper(),
        DAC[:-1],
        DAC + "1",
        DAC.replace("https", "http"),
        DAC.replace("EGAC", "EGA%43"),
        " " + DAC,
    ],
)
def test_ga02_trusted_source_matched_exactly(issuer: Signer, source: str) -> None:
    verifier = make_verifier(trust_config([issuer], sources={ISS: frozenset({DAC})}))
    assert isinstance(verifier.verify_visa(issuer.visa(visa=visa_object(source=DAC))), Visa)
    verdict = verifier.verify_visa(issuer.visa(visa=visa_object(source=source)))
    assert isinstance(verdict, Rejection) and verdict.reason in (Reason.SOURCE_NOT_ACCEPTED, Reason.BAD_CLAIM)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    suffix=st.text(alphabet=string.ascii_letters + string.digits + "/.-_%", min_size=1, max_size=12),
    cut=st.integers(min_value=0, max_value=len(DAC) - len("https://x")),
)
def test_ga02_any_other_source_string_is_refused(issuer: Signer, suffix: str, cut: int) -> None:
    verifier = make_verifier(trust_config([issuer], sources={ISS: frozenset({DAC})}))
    for candidate in (DAC + suffix, DAC[: len(DAC) - cut] if cut else DAC.swapcase()):
        if candidate == DAC:
            continue
        verdict = verifier.verify_visa(issuer.visa(visa=visa_object(source=candidate)))
        assert isinstance(verdict, Rejection)


@pytest.mark.parametrize(
    "iss", ["https://issuer.test", "https://Issuer.test/", "https://issuer.test/.", "https://issuer.test/?"]
)
def test_ga02_issuer_matched_exactly(verifier: Verifier, issuer: Signer, iss: str) -> None:
    token = Signer(iss, issuer.key, issuer.jku).visa()
    verdict = verifier.verify_visa(token)
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.UNTRUSTED_ISSUER


# ---------------------------------------------------------------------- GA-03


@pytest.fixture()
def url_server() -> Iterator[JwksServer]:
    with JwksServer(ca=trustme.CA()) as server:
        server.serve_jwks({"keys": []}, path="/anything")
        yield server


def test_ga03_url_claims_never_fetched(issuer: Signer, broker: Signer, url_server: JwksServer) -> None:
    custom = url_server.url("/custom-type")
    verifier = make_verifier(
        trust_config(
            [issuer],
            [broker],
            visa_types={ISS: frozenset({custom, "ControlledAccessGrants", "AcceptedTermsAndPolicies"})},
        ),
        session=url_server.session(),
    )
    visas = [
        issuer.visa(visa=visa_object(source=url_server.url("/source"), value=url_server.url("/value"))),
        issuer.visa(visa=visa_object(type="AcceptedTermsAndPolicies", value=url_server.url("/terms"), by="self")),
        issuer.visa(visa=visa_object(type=custom, value=url_server.url("/custom-value"))),
        issuer.visa(visa=visa_object(type=url_server.url("/not-configured"))),
    ]
    result = verifier.verify_passport(broker.passport(visas))
    assert len(result.accepted) == 3 and reasons(result) == [(3, Reason.UNKNOWN_CUSTOM_TYPE)]
    assert url_server.hits() == 0 and url_server.connections == 0


# ---------------------------------------------------------------------- GA-04


@pytest.mark.parametrize(
    "visa_type,reason",
    [
        ("https://evil.test/superuser", Reason.UNKNOWN_CUSTOM_TYPE),
        ("https://ras.nih.gov/visas/v1.1", Reason.UNKNOWN_CUSTOM_TYPE),
        ("ControlledAccessGrants ", Reason.BAD_CLAIM),
        ("controlledaccessgrants", Reason.BAD_CLAIM),
        ("ControlledAccessGrant", Reason.BAD_CLAIM),
        ("", Reason.BAD_CLAIM),
    ],
)
def test_ga04_unknown_custom_types_ignored(
    verifier: Verifier, issuer: Signer, broker: Signer, visa_type: str, reason: Reason
) -> None:
    result = verifier.verify_passport(broker.passport([issuer.visa(), issuer.visa(visa=visa_object(type=visa_type))]))
    assert result.ok and len(result.accepted) == 1 and reasons(result) == [(1, reason)]


# ---------------------------------------------------------------------- GA-05


def test_ga05_expired_visa_refused_and_cached_result_ends_at_the_earliest_exp(issuer: Signer, broker: Signer) -> None:
    clock = {"now": float(NOW)}
    cache = VerifiedCache(100)
    verifier = make_verifier(trust_config([issuer], [broker]), cache=cache, now=lambda: clock["now"])
    short, long = issuer.visa(exp=NOW + 120), issuer.visa(exp=NOW + 3000)
    passport = broker.passport([long, short], exp=NOW + 600)
    assert len(verifier.verify_passport(passport).accepted) == 2
    entry = next(e for e in cache._entries.values() if hasattr(e[0], "accepted"))
    assert entry[1] == NOW + 120  # the effective expiry of the cached decision input is the minimum
    clock["now"] = NOW + 120 + 61  # past the short visa's exp and the leeway
    result = verifier.verify_passport(passport)
    assert len(result.accepted) == 1 and reasons(result) == [(1, Reason.EXPIRED)]


# ---------------------------------------------------------------------- GA-06


@pytest.mark.parametrize(
    "asserted,reason",
    [
        (NOW + 365 * 86_400, Reason.ISSUED_IN_FUTURE),
        (0, Reason.BAD_CLAIM),
        ("1699999999", Reason.BAD_CLAIM),
        (-5, Reason.BAD_CLAIM),
        (10**20, Reason.BAD_CLAIM),
        (1.5e9, Reason.BAD_CLAIM),
    ],
)
def test_ga06_absurd_asserted_refused(
    verifier: Verifier, issuer: Signer, broker: Signer, asserted: Any, reason: Reason
) -> None:
    result = verifier.verify_passport(broker.passport([issuer.visa(visa=visa_object(asserted=asserted))]))
    assert result.ok and reasons(result) == [(0, reason)]


def test_ga06_asserted_never_extends_validity(verifier: Verifier, issuer: Signer) -> None:
    visa = verifier.verify_visa(issuer.visa(visa=visa_object(asserted=NOW), exp=NOW + 100))
    assert isinstance(visa, Visa) and visa.exp == NOW + 100


# ---------------------------------------------------------------------- GA-07


def test_ga07_issuer_not_trusted_for_this_source_or_type(issuer: Signer, broker: Signer) -> None:
    verifier = make_verifier(
        trust_config(
            [issuer], [broker], sources={ISS: frozenset({DAC})}, visa_types={ISS: frozenset({"ControlledAccessGrants"})}
        )
    )
    result = verifier.verify_passport(
        broker.passport(
            [
                issuer.visa(visa=visa_object(source=DAC)),
                issuer.visa(visa=visa_object(source="https://other-dac.example/EGAC9")),
                issuer.visa(visa=affiliation(source=DAC)),
            ]
        )
    )
    assert len(result.accepted) == 1
    assert reasons(result) == [(1, Reason.SOURCE_NOT_ACCEPTED), (2, Reason.TYPE_NOT_ACCEPTED)]


def test_ga07_untrusted_broker_or_issuer(verifier: Verifier, issuer: Signer, broker: Signer, stranger: Signer) -> None:
    assert verifier.verify_passport(stranger.passport([issuer.visa()])).error.reason is Reason.UNTRUSTED_ISSUER  # type: ignore[union-attr]
    relayed = verifier.verify_passport(broker.passport([stranger.visa(visa=visa_object(source=DAC))]))
    assert relayed.ok and reasons(relayed) == [(0, Reason.UNTRUSTED_ISSUER)]


# ---------------------------------------------------------------------- GA-08


def test_ga08_access_token_placed_as_a_visa_ignored(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    no_jku = Signer(ISS, issuer.key, None)
    at = no_jku.visa(header=no_jku.header(typ="at+jwt"), scope="openid ga4gh_passport_v1")
    visa_access_token = no_jku.visa(header=no_jku.header(typ="JWT"), scope="openid ga4gh_passport_v1")
    document_with_openid = issuer.visa(scope="openid")
    result = verifier.verify_passport(broker.passport([issuer.visa(), at, visa_access_token, document_with_openid]))
    assert result.ok and len(result.accepted) == 1
    assert reasons(result) == [(1, Reason.BAD_TYP), (2, Reason.ACCESS_TOKEN_FORM), (3, Reason.BAD_CLAIM)]
