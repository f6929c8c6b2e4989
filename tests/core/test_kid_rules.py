"""Issue 11, item 11: key-id rules (THREAT-MODEL JWT-04, SPEC-DIGEST C2, RFC 7515 section 4.1.4).

Three refusals, each with its reason code, and our own tokens unaffected:

- a visa without ``kid`` when its issuer publishes several keys, even if only one of them
  fits the visa's ``alg`` (KID_REQUIRED; the header must not pick among the issuer's keys);
- ``"kid": null`` is a malformed header, not an absent ``kid`` (MALFORMED);
- a passport without ``kid`` (KID_REQUIRED), even from a broker with a single key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from broker.core.issue import mint_passport, mint_visa
from broker.core.jose import JoseError, parse
from broker.core.models import Reason, Rejection, Visa, VisaObject
from broker.keys.ring import KeyRing
from broker.keys.settings import KeySettings
from broker.settings import Settings
from broker.trust.config import TrustConfig, TrustedIssuer
from broker.trust.keyset import ResolvedKey
from tests.support.forge import DROP, NOW, Signer, TestKey, forge, make_verifier, trust_config, visa_claims
from tests.support.jwks_server import JwksServer
from tests.support.keys import open_ring
from tests.support.settings import unchecked

ISS = "https://kid-issuer.test/"
BROKER = "https://kid-broker.test/"
OWN = "https://own-broker.test/"


@pytest.fixture(scope="module")
def issuer() -> Signer:
    return Signer(ISS, TestKey.generate("ES256", "es-1"), ISS + "jwks.json")


@pytest.fixture(scope="module")
def broker() -> Signer:
    return Signer(BROKER, TestKey.generate("ES256", "broker-1"))


@pytest.fixture()
def server() -> Iterator[JwksServer]:
    with JwksServer(ca=trustme.CA()) as jwks:
        yield jwks


def rejection(verdict: Visa | Rejection) -> Rejection:
    assert isinstance(verdict, Rejection), "visa accepted"
    return verdict


def test_jwt04_visa_without_kid_refused_when_the_jwks_has_several_keys_though_one_fits_its_alg(
    issuer: Signer, server: JwksServer
) -> None:
    rsa = TestKey.generate("RS256", "rs-1")
    # One ES256 key and one RS256 key: only one fits an ES256 visa.
    server.serve_jwks({"keys": issuer.key.jwks()["keys"] + rsa.jwks()["keys"]})
    signer = Signer(ISS, issuer.key, server.url())
    verifier = make_verifier(trust_config([signer], pinned=False), session=server.session())
    assert isinstance(verifier.verify_visa(signer.visa()), Visa)  # with its kid: fine
    no_kid = forge(signer.header(kid=DROP), visa_claims(ISS), issuer.key.private)
    refused = rejection(verifier.verify_visa(no_kid))
    assert refused.reason is Reason.KID_REQUIRED, refused.detail
    assert "2 keys" in refused.detail
    hits = server.hits()
    for _ in range(5):  # a rule, not a missing key: no refetch (JWT-18)
        assert rejection(verifier.verify_visa(no_kid)).reason is Reason.KID_REQUIRED
    assert server.hits() == hits == 1


def test_jwt04_visa_without_kid_accepted_from_an_issuer_with_exactly_one_key(
    issuer: Signer, server: JwksServer
) -> None:
    server.serve_jwks(issuer.key.jwks())
    signer = Signer(ISS, issuer.key, server.url())
    verifier = make_verifier(trust_config([signer], pinned=False), session=server.session())
    visa = verifier.verify_visa(forge(signer.header(kid=DROP), visa_claims(ISS), issuer.key.private))
    assert isinstance(visa, Visa) and visa.kid == issuer.key.kid


def test_jwt04_pinned_issuer_with_several_keys_needs_a_kid(issuer: Signer) -> None:
    other = TestKey.generate("RS256", "rs-2")
    pinned = {k.kid: ResolvedKey(k.kid, k.alg, k.public) for k in (issuer.key, other)}
    verifier = make_verifier(TrustConfig(OWN, {ISS: TrustedIssuer(ISS, frozenset(), pinned)}, {}))
    assert isinstance(verifier.verify_visa(issuer.visa()), Visa)
    no_kid = forge(issuer.header(kid=DROP), visa_claims(ISS), issuer.key.private)
    assert rejection(verifier.verify_visa(no_kid)).reason is Reason.KID_REQUIRED


@pytest.mark.parametrize("member", ["kid", "typ", "jku"])
def test_rfc7515_null_header_member_is_malformed_not_absent(issuer: Signer, member: str) -> None:
    token = forge({**issuer.header(), member: None}, visa_claims(ISS), issuer.key.private)
    with pytest.raises(JoseError) as info:
        parse(token, max_bytes=1 << 16, max_depth=16)
    assert info.value.reason is Reason.MALFORMED and member in info.value.detail


def test_rfc7515_visa_with_null_kid_is_refused_even_with_a_single_key(issuer: Signer) -> None:
    verifier = make_verifier(trust_config([issuer]))  # one pinned key: a kid-less visa would pass
    assert isinstance(verifier.verify_visa(forge(issuer.header(kid=DROP), visa_claims(ISS), issuer.key.private)), Visa)
    null_kid = forge(issuer.header(kid=None), visa_claims(ISS), issuer.key.private)
    refused = rejection(verifier.verify_visa(null_kid))
    assert refused.reason is Reason.MALFORMED and "kid" in refused.detail


def test_c2_passport_without_kid_is_refused(issuer: Signer, broker: Signer) -> None:
    verifier = make_verifier(trust_config([issuer], [broker]))  # the broker has exactly one (pinned) key
    header = {"alg": broker.key.alg, "typ": "vnd.ga4gh.passport+jwt"}
    assert verifier.verify_passport(broker.passport([issuer.visa()])).ok
    result = verifier.verify_passport(broker.passport([issuer.visa()], header=header))
    assert result.error is not None and result.error.reason is Reason.KID_REQUIRED, result.error
    assert result.accepted == ()
    null = verifier.verify_passport(broker.passport([issuer.visa()], header={**header, "kid": None}))
    assert null.error is not None and null.error.reason is Reason.MALFORMED


def test_own_issuer_tokens_carry_a_kid_and_verify_while_two_keys_are_published(tmp_path: Path) -> None:
    settings = unchecked(Settings(issuer=OWN, data_dir=str(tmp_path)), keys=KeySettings(algorithm="ES256"))
    ring: KeyRing = open_ring(settings, None, auto_maintain_seconds=None)
    ring.maintain(now=NOW - 1000)
    ring.rotate(now=NOW - 500, immediate=True)  # rotation overlap: two of our keys are published
    published = ring.public_keys(now=NOW)
    assert len(published) == 2
    own = {kid: ResolvedKey(kid, alg, key) for kid, (alg, key) in published.items()}
    verifier = make_verifier(TrustConfig(OWN, {}, {}, lambda: own))
    grant = VisaObject(
        type="ControlledAccessGrants",
        asserted=NOW - 100,
        value="https://ega.example/datasets/EGAD1",
        source="https://ega.example/dacs/EGAC1",
        by="dac",
    )
    visa = mint_visa(ring, OWN, "alice", grant, NOW + 3600, now=NOW, jti="v-own")
    passport = mint_passport(ring, OWN, "alice", [visa], 600, now=NOW, jti="p-own")
    assert parse(passport, max_bytes=1 << 16, max_depth=16).kid == ring.signing_key(now=NOW).kid
    result = verifier.verify_passport(passport)
    assert result.ok and result.rejected == () and [v.jti for v in result.accepted] == ["v-own"]
