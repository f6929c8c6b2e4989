"""The vectors of tests/data/ga4gh/vectors.json that concern verifying and issuing visas and passports.

Each test is parametrized with the vector id as its pytest id. The spec's examples carry
payloads only (no signatures): each is signed here by a test issuer whose ``iss`` is the
vector's own (or a test issuer where the spec leaves ``iss`` out), then verified by a real
Verifier, clock frozen inside the vector's validity window where it has one.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from broker.core.cache import VerifiedCache
from broker.core.identity_graph import IdentityGraph
from broker.core.issue import IssueError, mint_visa
from broker.core.linked_identities import parse_linked_identities
from broker.core.models import LINKED_IDENTITIES, PassportResult, Reason, Rejection, Visa, VisaObject
from broker.core.verify import Verifier
from broker.keys.settings import KeySettings
from broker.settings import Settings
from tests.core.vectors import data, vector
from tests.support.forge import NOW, Signer, TestKey, make_verifier, trust_config, visa_object
from tests.support.keys import open_ring

SPEC_ISSUER = "https://visas.spec.test/"  # for the example visas that leave iss out
SPEC_SUB = "10001"
BROKER = "https://broker.spec.test/"
EXAMPLE_NOW = 1_580_100_000  # inside every example visa's iat..exp window


def sign_payload(signer: Signer, payload: dict[str, Any], typ: str | None = "vnd.ga4gh.visa+jwt") -> str:
    from tests.support.forge import forge

    return forge(signer.header(typ=typ), payload, signer.key.private)


@pytest.fixture(scope="module")
def example_signers() -> dict[str, Signer]:
    """A signer per issuer named in the example passport, plus one for visas without iss."""
    names = [
        SPEC_ISSUER,
        "https://issuer.example1.org/oidc",
        "https://other.example2.org/oidc",
        "https://broker.example3.org/oidc",
    ]
    return {
        iss: Signer(iss, TestKey.generate("ES256", f"k{i}"), iss.rstrip("/") + "/jwks.json")
        for i, iss in enumerate(names)
    }


@pytest.fixture(scope="module")
def spec_broker() -> Signer:
    return Signer(BROKER, TestKey.generate("ES256", "broker"))


def example_visas(signers: dict[str, Signer]) -> list[str]:
    """The six visas of example-passport-claim-v1.2, signed (iss/sub/jti filled where the spec omits them)."""
    out = []
    for i, payload in enumerate(copy.deepcopy(data("example-passport-claim-v1.2")["ga4gh_passport_v1"])):
        payload.setdefault("iss", SPEC_ISSUER)
        payload.setdefault("sub", SPEC_SUB)
        payload.setdefault("jti", f"example-{i}")
        out.append(sign_payload(signers[payload["iss"]], payload))
    return out


def example_verifier(signers: dict[str, Signer], broker: Signer, cache: VerifiedCache | None = None) -> Verifier:
    return make_verifier(trust_config(list(signers.values()), [broker]), now=EXAMPLE_NOW, cache=cache)


# ---------------------------------------------------------------------- the example passport


@pytest.mark.parametrize("vector_id", ["example-passport-claim-v1.2"])
def test_example_passport(vector_id: str, example_signers: dict[str, Signer], spec_broker: Signer) -> None:
    expected = vector(vector_id)["expected"]
    verifier = example_verifier(example_signers, spec_broker)
    result = verifier.verify_passport(
        spec_broker.passport(
            example_visas(example_signers), sub="passport-holder", iat=EXAMPLE_NOW - 10, exp=EXAMPLE_NOW + 600
        )
    )
    assert result.ok and result.rejected == ()
    visas = result.accepted
    assert [v.visa.type for v in visas] == [
        "AffiliationAndRole",
        "ControlledAccessGrants",
        "ControlledAccessGrants",
        "AcceptedTermsAndPolicies",
        "ResearcherStatus",
        "LinkedIdentities",
    ]
    # visa 3 carries conditions and was accepted: visa 1 meets them
    assert visas[2].conditioned is expected["visa3_conditions_satisfied_by_visa1"]
    # visas 4 and 5 are of different identities, linked only by visa 6
    assert visas[3].identity != visas[4].identity
    assert expected["registered_access_requires_linkedidentities"] is True
    graph = IdentityGraph.from_visas(v for v in visas if v.visa.type == LINKED_IDENTITIES)
    assert graph.linked(visas[3].identity, visas[4].identity)
    decoded = [{"sub": s, "iss": i} for i, s in parse_linked_identities(visas[5].visa.value)]
    assert decoded == expected["linkedidentities_decoded"]
    assert min(v.exp for v in visas[3:6]) == expected["min_exp_if_visas_4_5_6_used"]
    assert min(visas[0].exp, visas[2].exp) == expected["min_exp_if_visas_1_and_3_used"]


@pytest.mark.parametrize("vector_id", ["example-passport-claim-v1.2"])
def test_example_passport_without_visa_1_refuses_visa_3(
    vector_id: str, example_signers: dict[str, Signer], spec_broker: Signer
) -> None:
    visas = example_visas(example_signers)
    del visas[0]
    result = example_verifier(example_signers, spec_broker).verify_passport(
        spec_broker.passport(visas, iat=EXAMPLE_NOW - 10, exp=EXAMPLE_NOW + 600)
    )
    assert [(r.index, r.reason) for r in result.rejected] == [(1, Reason.CONDITIONS_UNMET)]


VARIANTS = data("example-passport-condition-variants")


@pytest.mark.parametrize(
    "variant", range(len(VARIANTS)), ids=[f"example-passport-condition-variants-{i}" for i in range(len(VARIANTS))]
)
def test_example_condition_variants(variant: int, example_signers: dict[str, Signer], spec_broker: Signer) -> None:
    case = VARIANTS[variant]
    example = data("example-passport-claim-v1.2")["ga4gh_passport_v1"]
    signer = example_signers[SPEC_ISSUER]
    visa1 = {
        **copy.deepcopy(example[0]),
        "iss": SPEC_ISSUER,
        "sub": SPEC_SUB,
        "jti": "v1",
        "ga4gh_visa_v1": case["visa1_ga4gh_visa_v1"],
    }
    visa3 = {**copy.deepcopy(example[2]), "iss": SPEC_ISSUER, "sub": SPEC_SUB, "jti": "v3"}
    result = example_verifier(example_signers, spec_broker).verify_visas(
        [sign_payload(signer, visa1), sign_payload(signer, visa3)]
    )
    assert len(result.accepted) >= 1 and result.accepted[0].jti == "v1"  # visa 1 itself is always fine
    assert any(v.jti == "v3" for v in result.accepted) is case["expected"]


# ---------------------------------------------------------------------- visa formats


@pytest.mark.parametrize(
    "vector_id,typ,accepted",
    [
        ("visa-jwt-template-v1.2", "vnd.ga4gh.visa+jwt", True),
        ("visa-jwt-template-v1.2", "JWT", True),
        ("visa-jwt-template-v1.2", None, True),
        ("visa-jwt-template-v1.2", "at+jwt", False),  # an access-token visa: not supported (no polling)
        ("visa-jwt-template-v1.0", "JWT", True),
        ("visa-document-token-format-v1.0.4", "JWT", True),
    ],
    ids=lambda v: str(v),
)
def test_visa_templates(vector_id: str, typ: str | None, accepted: bool) -> None:
    template = data(vector_id)
    alg = "RS256" if template["header"]["alg"] == "RS256" else "ES256"
    signer = Signer(
        "https://issuer.template.test/", TestKey.generate(alg, "template"), "https://issuer.template.test/jwks.json"
    )
    verifier = make_verifier(trust_config([signer]))
    token = signer.visa("subject", visa_object(), header=signer.header(typ=typ))
    verdict = verifier.verify_visa(token)
    assert isinstance(verdict, Visa) is accepted, verdict
    if not accepted:
        assert verdict.reason is Reason.BAD_TYP  # type: ignore[union-attr]


@pytest.mark.parametrize("vector_id", ["visa-access-token-format-v1.0.4", "nih-ras-v1.1-visa"])
def test_visa_access_token_form_is_refused(vector_id: str) -> None:
    vec = data(vector_id)
    payload = dict(vec.get("payload", vec))
    iss = payload["iss"] if payload["iss"].startswith("https://stsstg") else "https://oidc.template.test/"
    signer = Signer(iss, TestKey.generate("RS256", "at"), None)  # no jku: access-token form
    claims = {
        "iss": iss,
        "sub": "subject",
        "iat": NOW - 60,
        "exp": NOW + 3600,
        "jti": "at-1",
        "scope": payload["scope"] if payload["scope"].startswith("openid") else "openid ga4gh_passport_v1",
        "ga4gh_visa_v1": visa_object(
            **(
                {}
                if not isinstance(payload["ga4gh_visa_v1"], dict)
                else {
                    "type": payload["ga4gh_visa_v1"]["type"],
                    "value": payload["ga4gh_visa_v1"]["value"],
                    "source": payload["ga4gh_visa_v1"]["source"],
                }
            )
        ),
    }
    if vector_id == "nih-ras-v1.1-visa":
        claims["ras_dbgap_permissions"] = payload["ras_dbgap_permissions"]
    types = {iss: frozenset({claims["ga4gh_visa_v1"]["type"]})}
    verifier = make_verifier(trust_config([signer], visa_types=types))
    verdict = verifier.verify_visa(sign_payload(signer, claims, typ="JWT"))
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.ACCESS_TOKEN_FORM


@pytest.mark.parametrize("vector_id", ["custom-visa-type-name", "custom-visa-registry"])
def test_custom_types_ignored_unless_configured(vector_id: str) -> None:
    custom = data(vector_id)["type"]
    signer = Signer("https://custom.test/", TestKey.generate("ES256", "c"), "https://custom.test/jwks.json")
    token = signer.visa(visa=visa_object(type=custom, value="https://custom.test/v", by="dac"))
    verdict = make_verifier(trust_config([signer])).verify_visa(token)
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.UNKNOWN_CUSTOM_TYPE
    configured = make_verifier(trust_config([signer], visa_types={signer.iss: frozenset({custom})}))
    assert configured.verify_visa(token).visa.type == custom  # type: ignore[union-attr]


# ---------------------------------------------------------------------- values, sources, real-world visas


@pytest.mark.parametrize("vector_id", ["source-dac-example", "no-organization-values"])
def test_sources(vector_id: str) -> None:
    vec = data(vector_id)
    source = vec.get("source") or vec["source_when_no_org"]
    signer = Signer("https://src.test/", TestKey.generate("ES256", "s"), "https://src.test/jwks.json")
    visa = make_verifier(trust_config([signer])).verify_visa(signer.visa(visa=visa_object(source=source)))
    assert isinstance(visa, Visa) and visa.visa.source == source


@pytest.mark.parametrize("vector_id", ["affiliation-and-role-values", "no-organization-values"])
def test_affiliation_values(vector_id: str) -> None:
    vec = data(vector_id)
    if vector_id == "no-organization-values":
        values = [vec["affiliation_and_role_example"]]
    else:
        values = [vec["standard"], vec["custom_v1_0_1_plus"], vec["custom_v1_0_0"], vec["no_org"]]
        values += [split["value"] for split in vec["split_examples"] if split["role"] is not None]
    signer = Signer("https://aff.test/", TestKey.generate("ES256", "a"), "https://aff.test/jwks.json")
    verifier = make_verifier(trust_config([signer]))
    for value in values:
        obj = visa_object(type="AffiliationAndRole", value=value, source="https://aff.test/org", by="system")
        assert verifier.verify_visa(signer.visa(visa=obj)).visa.value == value  # type: ignore[union-attr]
    if vector_id == "affiliation-and-role-values":  # no '@': error -> deny
        for split in vec["split_examples"]:
            if split["role"] is None:
                obj = visa_object(type="AffiliationAndRole", value=split["value"], source="https://aff.test/org")
                verdict = verifier.verify_visa(signer.visa(visa=obj))
                assert isinstance(verdict, Rejection) and verdict.reason is Reason.BAD_CLAIM


@pytest.mark.parametrize("vector_id", ["elixir-ls-aai-bona-fide-visas"])
def test_elixir_visas(vector_id: str) -> None:
    """LS AAI visas: header typ JWT, jku = <issuer>jwk, by values as the broker mints them."""
    iss = "https://login.aai.lifescience-ri.eu/oidc/"
    signer = Signer(iss, TestKey.generate("RS256", "rsa1"), iss + "jwk")
    verifier = make_verifier(trust_config([signer]))
    for entry in data(vector_id):
        obj = dict(entry["ga4gh_visa_v1"])
        obj["asserted"] = NOW - 3600
        if obj["value"].startswith("<"):
            obj["value"] = (
                "faculty@example.org"
                if obj["type"] == "AffiliationAndRole"
                else "user%40elixir,https%3A%2F%2Frems.example%2F"
            )
        if obj["source"].startswith("<"):
            obj["source"] = "https://www.example.org/"
        token = signer.visa("user@lifescience-ri.eu", obj, header=signer.header(typ="JWT"))
        visa = verifier.verify_visa(token)
        assert isinstance(visa, Visa), (obj, visa)
        assert visa.visa.by == obj["by"]


@pytest.mark.parametrize("vector_id", ["beacon-python-bona-fide-docstring-visas"])
def test_legacy_beacon_visas(vector_id: str) -> None:
    """Non-standard 'expires' inside the visa object is ignored (unknown member); exp comes from the JWT."""
    signer = Signer("https://legacy.test/", TestKey.generate("ES256", "l"), "https://legacy.test/jwks.json")
    verifier = make_verifier(trust_config([signer]), now=1_539_100_000)
    for entry in data(vector_id):
        obj = entry["ga4gh_visa_v1"]
        token = signer.visa("legacy-user", obj, iat=1_539_099_000, exp=1_539_200_000)
        verdict = verifier.verify_visa(token)
        if obj["asserted"] > 1_539_100_000 + 60:  # asserted after "now": never extends validity (GA-06)
            assert isinstance(verdict, Rejection) and verdict.reason is Reason.ISSUED_IN_FUTURE
        else:
            assert isinstance(verdict, Visa) and verdict.exp == 1_539_200_000


@pytest.mark.parametrize("vector_id", ["registered-access-visas"])
def test_registered_access_visas_issue_and_verify(vector_id: str, tmp_path: Any) -> None:
    settings = Settings(issuer="https://ra.broker.test/", data_dir=str(tmp_path), keys=KeySettings(algorithm="ES256"))
    ring = open_ring(settings, None, auto_maintain_seconds=None)  # file storage
    ring.maintain(now=NOW)
    from broker.trust.keyset import ResolvedKey

    own = {kid: ResolvedKey(kid, alg, key) for kid, (alg, key) in ring.public_keys(now=NOW).items()}
    from broker.trust.config import TrustConfig

    trust = TrustConfig(settings.issuer, {}, {}, lambda: own)
    verifier = make_verifier(trust)
    for wanted in data(vector_id):
        obj = VisaObject(
            type=wanted["type"],
            asserted=NOW - 10,
            value=wanted["value"],
            source="https://ra.broker.test/",
            by="self" if "Terms" in wanted["type"] else "so",
        )
        visa = verifier.verify_visa(mint_visa(ring, settings.issuer, "researcher", obj, NOW + 3600, now=NOW))
        assert isinstance(visa, Visa) and (visa.visa.type, visa.visa.value) == (wanted["type"], wanted["value"])
    with pytest.raises(IssueError):  # AcceptedTermsAndPolicies needs by
        mint_visa(
            ring,
            settings.issuer,
            "researcher",
            VisaObject(
                type="AcceptedTermsAndPolicies",
                asserted=NOW,
                value=data(vector_id)[0]["value"],
                source="https://ra.broker.test/",
            ),
            NOW + 3600,
            now=NOW,
        )


# ---------------------------------------------------------------------- passports, audiences, access tokens


@pytest.mark.parametrize(
    "vector_id,audience,ok",
    [
        ("passport-jwt-template-v1.2", "<client-id1>", True),
        ("passport-jwt-template-v1.2", "<client-id2>", True),
        ("passport-jwt-template-v1.2", "<client-id3>", False),
        ("token-exchange-passport-decoded", "https://drs.example.com", True),
        ("token-exchange-passport-decoded", "https://drs.example.com/dataset1", False),
    ],
    ids=lambda v: str(v),
)
def test_passport_templates_and_audience(vector_id: str, audience: str, ok: bool, spec_broker: Signer) -> None:
    template = data(vector_id)
    assert template["header"]["typ"] == "vnd.ga4gh.passport+jwt"
    verifier = make_verifier(trust_config([], [spec_broker]))
    token = spec_broker.passport([], aud=template["payload"]["aud"])
    result: PassportResult = verifier.verify_passport(token, audience=audience)
    assert result.ok is ok
    if not ok:
        assert result.error.reason is Reason.BAD_AUDIENCE  # type: ignore[union-attr]


@pytest.mark.parametrize("vector_id", ["passport-scoped-access-token-template-v1.2", "access-token-template-v1.0"])
def test_access_token_is_neither_passport_nor_visa(vector_id: str, spec_broker: Signer) -> None:
    template = data(vector_id)
    typ = "at+jwt" if "at+jwt" in template["header"]["typ"] else "JWT"
    claims = {
        "iss": BROKER,
        "sub": "s",
        "iat": NOW - 5,
        "exp": NOW + 600,
        "jti": "at",
        "scope": "openid ga4gh_passport_v1",
        "aud": ["client-1"],
    }
    token = sign_payload(Signer(BROKER, spec_broker.key, None), claims, typ=typ)
    issuer_too = Signer(BROKER, spec_broker.key, BROKER + "jwks.json")  # even if the broker also issues visas
    verifier = make_verifier(trust_config([issuer_too], [spec_broker]))
    assert verifier.verify_passport(token).error.reason is Reason.BAD_TYP  # type: ignore[union-attr]
    verdict = verifier.verify_visa(token)
    assert isinstance(verdict, Rejection) and verdict.reason in (Reason.BAD_TYP, Reason.ACCESS_TOKEN_FORM)


@pytest.mark.parametrize("vector_id", ["passport-claim-shape"])
def test_placeholder_visas_are_malformed(vector_id: str, spec_broker: Signer) -> None:
    verifier = make_verifier(trust_config([], [spec_broker]))
    result = verifier.verify_passport(spec_broker.passport(data(vector_id)["ga4gh_passport_v1"]))
    assert result.ok and {r.reason for r in result.rejected} == {Reason.MALFORMED} and len(result.rejected) == 2


@pytest.mark.parametrize("vector_id", ["userinfo-response-v1.0-flow"])
def test_userinfo_visa_list(vector_id: str, example_signers: dict[str, Signer]) -> None:
    response = data(vector_id)["response"]
    assert isinstance(response["ga4gh_passport_v1"], list)
    signer = example_signers[SPEC_ISSUER]
    tokens = [signer.visa(response["sub"]) for _ in response["ga4gh_passport_v1"]]
    result = make_verifier(trust_config([signer])).verify_visas(tokens)
    assert result.ok and len(result.accepted) == len(tokens)


@pytest.mark.parametrize("vector_id", ["faq-jku-header-and-trust-config"])
def test_faq_trust_shapes(vector_id: str) -> None:
    vec = data(vector_id)
    fragment = vec["jwt_header_fragment"]
    key = TestKey.generate("ES256", fragment["kid"])
    signer = Signer(fragment["iss"], key, fragment["jku"])
    trusted = make_verifier(trust_config([signer]))
    assert isinstance(trusted.verify_visa(signer.visa()), Visa)
    moved = Signer(fragment["iss"], key, "https://issuer.example.org/other-keys.json")
    allow_listed = make_verifier(trust_config([signer], allow_jku=True))
    verdict = allow_listed.verify_visa(moved.visa())
    assert isinstance(verdict, Rejection) and verdict.reason is Reason.JKU_NOT_ALLOWED
    # A visa issuer whose iss is not a URL (non-locatable), trusted by pre-shared key.
    urn = Signer(
        vec["non_locatable_visa_issuer_example"],
        TestKey.generate("ES256", "kid123456"),
        "https://dac.gov.world/jwks.json",
    )
    assert make_verifier(trust_config([urn])).verify_visa(urn.visa()).iss == urn.iss  # type: ignore[union-attr]


# ---------------------------------------------------------------------- visa claim shape, v1.0 example


@pytest.mark.parametrize("vector_id", ["visa-claim-shape"])
def test_visa_claim_shape_members_are_each_required(vector_id: str) -> None:
    """The four members of the shape are the minimum: each is required, asserted as an integer."""
    shape = data(vector_id)["ga4gh_visa_v1"]
    assert set(shape) == {"type", "asserted", "value", "source"} and ":int>" in shape["asserted"]
    filled = {
        "type": "ResearcherStatus",
        "asserted": NOW - 60,
        "value": "https://doi.org/10.1038/s41431-018-0219-y",
        "source": "https://no.organization",
    }
    signer = Signer("https://shape.test/", TestKey.generate("ES256", "shape"), "https://shape.test/jwks.json")
    verifier = make_verifier(trust_config([signer]))
    visa = verifier.verify_visa(signer.visa(visa=filled))
    assert isinstance(visa, Visa) and visa.visa.to_claim() == filled
    for member in shape:
        partial = {k: v for k, v in filled.items() if k != member}
        verdict = verifier.verify_visa(signer.visa(visa=partial))
        assert isinstance(verdict, Rejection) and verdict.reason is Reason.MISSING_CLAIM, member
    as_written = verifier.verify_visa(signer.visa(visa={**filled, "asserted": shape["asserted"]}))
    assert isinstance(as_written, Rejection) and as_written.reason is Reason.BAD_CLAIM


@pytest.mark.parametrize("vector_id", ["example-passport-claim-v1.0-diff"])
def test_example_passport_v1_0_verifies_with_its_dbgap_visa(
    vector_id: str, example_signers: dict[str, Signer], spec_broker: Signer
) -> None:
    """The v1.0.0 example passport: the v1.2 one with visa 2 replaced; every visa still verifies."""
    diff = data(vector_id)
    payloads = copy.deepcopy(data("example-passport-claim-v1.2")["ga4gh_passport_v1"])
    payloads[diff["visa_index"]]["ga4gh_visa_v1"] = diff["ga4gh_visa_v1"]
    tokens = []
    for i, payload in enumerate(payloads):
        payload.setdefault("iss", SPEC_ISSUER)
        payload.setdefault("sub", SPEC_SUB)
        payload.setdefault("jti", f"v1.0-example-{i}")
        tokens.append(sign_payload(example_signers[payload["iss"]], payload))
    result = example_verifier(example_signers, spec_broker).verify_passport(
        spec_broker.passport(tokens, iat=EXAMPLE_NOW - 10, exp=EXAMPLE_NOW + 600)
    )
    assert result.ok and result.rejected == () and len(result.accepted) == len(payloads)
    visa = result.accepted[diff["visa_index"]].visa
    assert (visa.value, visa.source, visa.by) == (
        diff["ga4gh_visa_v1"]["value"],
        diff["ga4gh_visa_v1"]["source"],
        diff["ga4gh_visa_v1"]["by"],
    )


# ---------------------------------------------------------------------- token exchange (the parts in core)


@pytest.mark.parametrize("vector_id", ["token-exchange-request"])
def test_token_exchange_request_resources_scope_the_passport_audience(vector_id: str, tmp_path: Any) -> None:
    """The URNs of the request are ours, and its ``resource`` values become the passport's ``aud``.

    (The endpoint itself, broker/oidc/token_exchange.py, is tested over HTTP in tests/oidc; this is
    the part the core owns: the constants both ends use, and a passport minted for those
    resources verifies for each of them and for nothing else.)
    """
    from broker.core.issue import mint_passport
    from broker.core.models import ACCESS_TOKEN_TYPE, PASSPORT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT

    request = data(vector_id)
    assert (request["grant_type"], request["requested_token_type"], request["subject_token_type"]) == (
        TOKEN_EXCHANGE_GRANT,
        PASSPORT_TOKEN_TYPE,
        ACCESS_TOKEN_TYPE,
    )
    ring, verifier, issuer = _own_ring_and_verifier(tmp_path)
    passport = mint_passport(ring, issuer, "alice", [], 600, audience=request["resource"], now=NOW)
    for resource in request["resource"]:
        assert verifier.verify_passport(passport, audience=resource).ok
    refused = verifier.verify_passport(passport, audience="https://drs.example.com/dataset3")
    assert refused.error is not None and refused.error.reason is Reason.BAD_AUDIENCE


@pytest.mark.parametrize("vector_id", ["token-exchange-response"])
def test_token_exchange_response_carries_a_passport(vector_id: str, tmp_path: Any) -> None:
    from broker.core.issue import mint_passport
    from broker.core.models import PASSPORT_TOKEN_TYPE, PASSPORT_TYP

    response = data(vector_id)
    assert response["issued_token_type"] == PASSPORT_TOKEN_TYPE and response["token_type"] == "Bearer"
    assert response["access_token"] == "<Passport>"
    ring, verifier, issuer = _own_ring_and_verifier(tmp_path)
    answer = {**response, "access_token": mint_passport(ring, issuer, "alice", [], 600, now=NOW)}
    from broker.core.jose import parse

    assert parse(answer["access_token"], max_bytes=1 << 16, max_depth=16).typ == PASSPORT_TYP
    assert verifier.verify_passport(answer["access_token"]).ok
    placeholder = verifier.verify_passport(response["access_token"])
    assert placeholder.error is not None and placeholder.error.reason is Reason.MALFORMED


def _own_ring_and_verifier(tmp_path: Any) -> tuple[Any, Verifier, str]:
    from broker.trust.config import TrustConfig
    from broker.trust.keyset import ResolvedKey

    settings = Settings(issuer="https://tx.broker.test/", data_dir=str(tmp_path), keys=KeySettings(algorithm="ES256"))
    ring = open_ring(settings, None, auto_maintain_seconds=None)
    ring.maintain(now=NOW)
    own = {kid: ResolvedKey(kid, alg, key) for kid, (alg, key) in ring.public_keys(now=NOW).items()}
    return ring, make_verifier(TrustConfig(settings.issuer, {}, {}, lambda: own)), settings.issuer
