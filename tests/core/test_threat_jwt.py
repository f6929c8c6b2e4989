"""THREAT-MODEL section 1 (JWT-01..JWT-31): the items that concern verifying visas and passports.

Each test is named after its id and asserts the item's Expect line at the two clearinghouse
entry points (THREAT-MODEL section 0): EPM e (a passport that fails is refused as a whole:
``PassportResult.error``) and EPM f (a visa that fails inside a good passport is ignored:
a ``Rejection`` for it, the rest accepted). ``jku`` items run real HTTPS JWKS servers on
loopback with hit counters and assert zero hits wherever nothing may be fetched.

JWT-25 (weak HMAC secrets) is here as the proof that the visa/passport path has no HMAC at
all, hence no secret to crack; the client-secret generator it also names is oidc's.

Not here, because they are not verification: JWT-08 (fetch hardening: tests/trust),
JWT-29 (one-time client assertions and tickets: oidc and store; visas and passports are
bearer tokens meant to be presented again until their ``exp``).
"""

from __future__ import annotations

import ast
import base64
import builtins
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.cli.passport import render_report
from broker.core.cache import VerifiedCache
from broker.core.jose import JoseError, check_key
from broker.core.limits import LimitSettings
from broker.core.models import ALLOWED_ALGORITHMS, PassportResult, Reason, Rejection, Visa
from broker.core.verify import Verifier
from broker.trust.settings import JwksFetchSettings
from tests.support.forge import (
    DROP,
    NOW,
    Signer,
    TestKey,
    b64,
    encode_part,
    forge,
    make_verifier,
    public_jwk,
    sign_es256,
    trust_config,
    visa_claims,
    visa_object,
)
from tests.support.jwks_server import JwksServer

ISS = "https://issuer.test/"
BROKER = "https://broker2.test/"
ROOT = Path(__file__).resolve().parents[2]
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def issuer() -> Signer:
    return Signer(ISS, TestKey.generate("ES256", "issuer-k1"), ISS + "jwks.json")


@pytest.fixture(scope="module")
def rs_issuer() -> Signer:
    return Signer("https://rsa-issuer.test/", TestKey.generate("RS256", "rsa-k1"), "https://rsa-issuer.test/jwks.json")


@pytest.fixture(scope="module")
def broker() -> Signer:
    return Signer(BROKER, TestKey.generate("ES256", "broker-k1"))


@pytest.fixture()
def verifier(issuer: Signer, rs_issuer: Signer, broker: Signer) -> Verifier:
    return make_verifier(trust_config([issuer, rs_issuer], [broker]))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture()
def servers(ca: trustme.CA) -> Iterator[tuple[JwksServer, JwksServer]]:
    """Two HTTPS JWKS servers on loopback (one CA), each counting hits and connections."""
    with JwksServer(ca=ca) as first, JwksServer(ca=ca) as second:
        yield first, second


def fetched(signer: Signer, server: JwksServer, path: str = "/jwks.json") -> Signer:
    """``signer`` whose jku is ``server``'s URL, its key served there."""
    server.serve_jwks(signer.key.jwks(), path=path)
    return Signer(signer.iss, signer.key, server.url(path))


def jku_verifier(
    signers: list[Signer],
    server: JwksServer,
    brokers: list[Signer] = (),  # type: ignore[assignment]
    **kwargs: Any,
) -> Verifier:
    """Keys only from the allow-listed jku URLs (nothing pinned)."""
    return make_verifier(trust_config(signers, brokers, pinned=False), session=server.session(), **kwargs)


def ignored(verifier: Verifier, broker: Signer, bad_visa: Any, good_visa: str, reason: Reason | None) -> Rejection:
    """EPM f: in an otherwise valid passport the bad visa is ignored, the good one accepted."""
    result = verifier.verify_passport(broker.passport([good_visa, bad_visa]))
    assert result.ok, result.error
    assert [v.raw for v in result.accepted] == [good_visa]
    (rejection,) = result.rejected
    assert rejection.index == 1
    if reason is not None:
        assert rejection.reason is reason, f"{rejection.reason}: {rejection.detail}"
    return rejection


def refused(result: PassportResult, reason: Reason | None) -> Rejection:
    """EPM e: the passport itself is refused."""
    assert result.error is not None, "passport accepted"
    if reason is not None:
        assert result.error.reason is reason, f"{result.error.reason}: {result.error.detail}"
    assert result.accepted == () and result.rejected == ()
    return result.error


def visa_refused(verdict: Visa | Rejection, reason: Reason) -> Rejection:
    assert isinstance(verdict, Rejection), "visa accepted"
    assert verdict.reason is reason, f"{verdict.reason}: {verdict.detail}"
    return verdict


def passport_claims(**extra: Any) -> dict[str, Any]:
    claims = {"iss": BROKER, "sub": "alice", "iat": NOW - 10, "exp": NOW + 600, "jti": "p-1", "ga4gh_passport_v1": []}
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not DROP}


PASSPORT_HEADER = {"alg": "ES256", "kid": "broker-k1", "typ": "vnd.ga4gh.passport+jwt"}


# ---------------------------------------------------------------------- JWT-01 .. JWT-04


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", [b"", b"\x00" * 64])
def test_jwt01_alg_none_refused(verifier: Verifier, issuer: Signer, broker: Signer, alg: str, signature: bytes) -> None:
    bad_visa = forge(issuer.header(alg=alg), visa_claims(ISS), signature=signature)
    ignored(verifier, broker, bad_visa, issuer.visa(), Reason.BAD_ALG)
    refused(
        verifier.verify_passport(forge({**PASSPORT_HEADER, "alg": alg}, passport_claims(), signature=signature)),
        Reason.BAD_ALG,
    )


def _public_encodings(key: Any) -> dict[str, bytes]:
    public = key.public_key() if hasattr(key, "private_numbers") else key
    return {
        "pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "ssh": public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
        "jwk": json.dumps(public_jwk(public, "k")).encode(),
    }


def _hmac_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes, alg: str) -> str:
    signing_input = f"{encode_part(header)}.{encode_part(payload)}".encode()
    digest = {"HS256": hashes.SHA256(), "HS384": hashes.SHA384(), "HS512": hashes.SHA512()}[alg]
    mac = hmac.HMAC(secret, digest)
    mac.update(signing_input)
    return f"{signing_input.decode()}.{b64(mac.finalize())}"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("encoding", ["pem", "der", "ssh", "jwk"])
def test_jwt02_hmac_with_our_public_key_refused(
    verifier: Verifier, issuer: Signer, rs_issuer: Signer, broker: Signer, alg: str, encoding: str
) -> None:
    for signer in (issuer, rs_issuer):
        secret = _public_encodings(signer.key.private)[encoding]
        bad = _hmac_token(signer.header(alg=alg), visa_claims(signer.iss), secret, alg)
        ignored(verifier, broker, bad, issuer.visa(), Reason.BAD_ALG)
    secret = _public_encodings(broker.key.private)[encoding]
    refused(
        verifier.verify_passport(_hmac_token({**PASSPORT_HEADER, "alg": alg}, passport_claims(), secret, alg)),
        Reason.BAD_ALG,
    )


def test_jwt02_no_call_site_mixes_hmac_and_asymmetric_algorithms() -> None:
    """Grep-test: no ``algorithms=`` list anywhere in broker/ names an HS* algorithm."""
    offenders = []
    for path in (ROOT / "broker").rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"algorithms\s*=.*HS(256|384|512)", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []


@pytest.mark.parametrize(
    "token_alg,key_name,reason",
    [
        ("PS256", "rsa", Reason.BAD_ALG),
        ("RS512", "rsa", Reason.BAD_ALG),
        ("ES384", "ec", Reason.BAD_ALG),
        ("ES512", "ec", Reason.BAD_ALG),
        ("ES256K", "ec", Reason.BAD_ALG),
        ("EdDSA", "ec", Reason.BAD_ALG),
        ("ES256", "rsa", Reason.BAD_ALG),
        ("RS256", "ec", Reason.BAD_ALG),
    ],
)
def test_jwt03_alg_must_match_the_key(
    verifier: Verifier, issuer: Signer, rs_issuer: Signer, broker: Signer, token_alg: str, key_name: str, reason: Reason
) -> None:
    signer = rs_issuer if key_name == "rsa" else issuer
    bad = forge(signer.header(alg=token_alg), visa_claims(signer.iss), signer.key.private)
    ignored(verifier, broker, bad, issuer.visa(), reason)


def test_jwt03_only_the_exact_pair_verifies(
    issuer: Signer, rs_issuer: Signer, broker: Signer, verifier: Verifier
) -> None:
    assert isinstance(verifier.verify_visa(issuer.visa()), Visa)
    assert isinstance(verifier.verify_visa(rs_issuer.visa()), Visa)


def test_jwt03_jwk_for_encryption_is_not_used(
    servers: tuple[JwksServer, JwksServer], issuer: Signer, broker: Signer
) -> None:
    server, _ = servers
    server.serve_jwks({"keys": [{**issuer.key.jwk(), "use": "enc"}]})
    signer = Signer(ISS, issuer.key, server.url("/jwks.json"))
    verifier = jku_verifier([signer], server, [broker])
    visa_refused(verifier.verify_visa(signer.visa()), Reason.KEY_NOT_FOUND)
    assert server.hits("/jwks.json") == 1


KID_ATTACKS: list[Any] = [
    "../../../../dev/null",
    "/proc/self/environ",
    "' OR '1'='1",
    "x' UNION SELECT 'AAAA'--",
    "*)(uid=*",
    "\u0000",
    "%s%s%s%n",
    1,
    {"a": 1},
    ["k"],
    True,
]


@pytest.mark.parametrize("kid", KID_ATTACKS, ids=[repr(k)[:20] for k in KID_ATTACKS])
def test_jwt04_kid_injection(
    servers: tuple[JwksServer, JwksServer], issuer: Signer, broker: Signer, monkeypatch: pytest.MonkeyPatch, kid: Any
) -> None:
    server, _ = servers
    signer = fetched(issuer, server)
    verifier = jku_verifier([signer], server, [broker])
    assert isinstance(verifier.verify_visa(signer.visa()), Visa)  # warms the JWKS cache: 1 hit
    opened: list[Any] = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    bad = forge(signer.header(kid=kid), visa_claims(ISS), issuer.key.private)
    rejection = ignored(verifier, broker, bad, signer.visa(), None)
    assert rejection.reason in (Reason.KEY_NOT_FOUND, Reason.MALFORMED)
    assert opened == []  # kid is never a path
    assert server.hits("/jwks.json") <= 2  # at most one refetch per cooldown


def test_jwt04_huge_kid(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    bad = forge(issuer.header(kid="k" * 20_000), visa_claims(ISS), issuer.key.private)
    ignored(verifier, broker, bad, issuer.visa(), Reason.TOO_LARGE)
    visa_refused(verifier.verify_visa(forge(issuer.header(kid="k" * 1_000_000), visa_claims(ISS))), Reason.TOO_LARGE)
    ignored(
        verifier,
        broker,
        forge(issuer.header(kid="k" * 300), visa_claims(ISS), issuer.key.private),
        issuer.visa(),
        Reason.MALFORMED,
    )


def test_jwt04_absent_kid_with_several_keys_is_refused(issuer: Signer, broker: Signer) -> None:
    from broker.trust.config import TrustConfig, TrustedIssuer
    from tests.support.forge import OWN_ISSUER, resolved

    second = TestKey.generate("ES256", "issuer-k2")
    pinned = {issuer.key.kid: resolved(issuer.key), second.kid: resolved(second)}
    trust = TrustConfig(OWN_ISSUER, {ISS: TrustedIssuer(ISS, frozenset(), pinned)}, {})
    verifier = make_verifier(trust)
    assert isinstance(verifier.verify_visa(issuer.visa()), Visa)
    bad = forge(issuer.header(kid=DROP), visa_claims(ISS), issuer.key.private)
    visa_refused(verifier.verify_visa(bad), Reason.KID_REQUIRED)


# ---------------------------------------------------------------------- JWT-05 .. JWT-07 (jku)


def test_jwt05_untrusted_jku_never_fetched(
    servers: tuple[JwksServer, JwksServer], issuer: Signer, broker: Signer
) -> None:
    trusted_server, attacker_server = servers
    signer = fetched(issuer, trusted_server)
    attacker = TestKey.generate("ES256", "issuer-k1")  # same kid, attacker's key
    attacker_server.serve_jwks(attacker.jwks())
    verifier = jku_verifier([signer], trusted_server, [broker])
    forged = Signer(ISS, attacker, attacker_server.url("/jwks.json")).visa()
    ignored(verifier, broker, forged, signer.visa(), Reason.JKU_NOT_ALLOWED)
    assert attacker_server.hits() == 0 and attacker_server.connections == 0
    untrusted = Signer("https://evil.test/", attacker, attacker_server.url("/jwks.json")).visa()
    visa_refused(verifier.verify_visa(untrusted), Reason.UNTRUSTED_ISSUER)
    assert attacker_server.connections == 0


def test_jwt06_jku_trusted_for_another_issuer(servers: tuple[JwksServer, JwksServer], broker: Signer) -> None:
    server_a, server_b = servers
    a = fetched(Signer("https://issuer-a.test/", TestKey.generate("ES256", "ka")), server_a)
    b = fetched(Signer("https://issuer-b.test/", TestKey.generate("ES256", "kb")), server_b)
    verifier = jku_verifier([a, b], server_a, [broker])
    outcomes = {}
    for claimed in (a, b):
        for via in (a, b):
            token = forge(
                {"alg": "ES256", "kid": via.key.kid, "jku": via.jku}, visa_claims(claimed.iss), via.key.private
            )
            verdict = verifier.verify_visa(token)
            outcomes[(claimed.iss[8:16], via.iss[8:16])] = verdict.reason if isinstance(verdict, Rejection) else "ok"
    assert outcomes == {
        ("issuer-a", "issuer-a"): "ok",
        ("issuer-b", "issuer-b"): "ok",
        ("issuer-a", "issuer-b"): Reason.JKU_NOT_ALLOWED,
        ("issuer-b", "issuer-a"): Reason.JKU_NOT_ALLOWED,
    }
    assert server_a.hits("/jwks.json") == 1 and server_b.hits("/jwks.json") == 1


def test_jwt07_jku_parser_differentials_never_fetched(
    servers: tuple[JwksServer, JwksServer], issuer: Signer, broker: Signer
) -> None:
    trusted_server, evil_server = servers
    signer = fetched(issuer, trusted_server)
    trusted = signer.jku
    assert trusted is not None
    t_host = f"127.0.0.1:{trusted_server.port}"
    e_host = f"127.0.0.1:{evil_server.port}"
    evil_server.serve_jwks(issuer.key.jwks())
    variants = [
        f"https://{t_host}@{e_host}/jwks.json",
        f"https://{e_host}\\@{t_host}/jwks.json",
        f"https://{e_host}#@{t_host}/jwks.json",
        f"https://{e_host}/jwks.json?{t_host}",
        trusted + ".evil",
        trusted + "/",
        trusted.upper(),
        trusted.replace("https", "HTTPS"),
        trusted.replace("127.0.0.1", "127.0.0.1."),
        trusted.replace("127.0.0.1", "localhost"),
        trusted.replace("127.0.0.1", "[::ffff:127.0.0.1]"),
        " " + trusted,
        trusted + " ",
        "\t" + trusted,
        trusted.replace(".json", "%2ejson"),
        trusted.replace("127.0.0.1", "127.0.0.1%40" + e_host),
        trusted.replace("127.0.0.1", "127\u30020\u30020\u30021"),
        trusted.replace("https://", "https:/"),
        trusted.replace("https://", "http://"),
        trusted + "#",
        trusted + "?",
    ]
    verifier = jku_verifier([signer], trusted_server, [broker])
    for jku in variants:
        token = forge({"alg": "ES256", "kid": issuer.key.kid, "jku": jku}, visa_claims(ISS), issuer.key.private)
        visa_refused(verifier.verify_visa(token), Reason.JKU_NOT_ALLOWED)
    assert evil_server.connections == 0 and trusted_server.connections == 0


# ---------------------------------------------------------------------- JWT-09 .. JWT-11


@pytest.mark.parametrize("member", ["jwk", "x5c", "x5u"])
def test_jwt09_embedded_key_never_used(
    servers: tuple[JwksServer, JwksServer], issuer: Signer, broker: Signer, member: str
) -> None:
    server, attacker_server = servers
    attacker = TestKey.generate("ES256", "issuer-k1")
    value: Any = {"jwk": attacker.jwk(), "x5c": ["MIIBkTCB+wIJA"], "x5u": attacker_server.url("/cert.pem")}[member]
    signer = fetched(issuer, server)
    verifier = jku_verifier([signer], server, [broker])
    bad = forge({**signer.header(), member: value}, visa_claims(ISS), attacker.private)
    ignored(verifier, broker, bad, signer.visa(), Reason.EMBEDDED_KEY)
    refused(
        verifier.verify_passport(forge({**PASSPORT_HEADER, member: value}, passport_claims(), attacker.private)),
        Reason.EMBEDDED_KEY,
    )
    assert attacker_server.connections == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["foo"], "foo": 1},
        {"crit": []},
        {"crit": ["alg"]},
        {"crit": ["b64"], "b64": False},
        {"crit": "exp"},
    ],
)
def test_jwt10_crit_refused(verifier: Verifier, issuer: Signer, broker: Signer, extra: dict[str, Any]) -> None:
    ignored(
        verifier,
        broker,
        forge({**issuer.header(), **extra}, visa_claims(ISS), issuer.key.private),
        issuer.visa(),
        Reason.CRIT_UNSUPPORTED,
    )
    refused(
        verifier.verify_passport(forge({**PASSPORT_HEADER, **extra}, passport_claims(), broker.key.private)),
        Reason.CRIT_UNSUPPORTED,
    )


def test_jwt11_cross_jwt_confusion_only_the_diagonal_succeeds(issuer: Signer, broker: Signer) -> None:
    """One key trusted both as a visa issuer and as a broker (the worst case); four token classes."""
    both = Signer(BROKER, broker.key, BROKER + "jwks.json")
    verifier = make_verifier(trust_config([both], [broker]))
    visa = both.visa()
    passport = broker.passport([])
    access_token = forge(
        {"alg": "ES256", "kid": "broker-k1", "typ": "at+jwt"},
        {
            "iss": BROKER,
            "sub": "alice",
            "iat": NOW,
            "exp": NOW + 600,
            "jti": "at-1",
            "scope": "openid ga4gh_passport_v1",
            "aud": "client-1",
            "client_id": "client-1",
        },
        broker.key.private,
    )
    id_token = forge(
        {"alg": "ES256", "kid": "broker-k1", "typ": "JWT"},
        {"iss": BROKER, "sub": "alice", "iat": NOW, "exp": NOW + 600, "aud": "client-1", "nonce": "n"},
        broker.key.private,
    )
    tokens = {"visa": visa, "passport": passport, "access_token": access_token, "id_token": id_token}
    as_visa = {name: isinstance(verifier.verify_visa(t), Visa) for name, t in tokens.items()}
    as_passport = {name: verifier.verify_passport(t).ok for name, t in tokens.items()}
    assert as_visa == {"visa": True, "passport": False, "access_token": False, "id_token": False}
    assert as_passport == {"visa": False, "passport": True, "access_token": False, "id_token": False}
    assert verifier.verify_visa(access_token).reason is Reason.BAD_TYP  # type: ignore[union-attr]
    assert verifier.verify_visa(passport).reason is Reason.BAD_TYP  # type: ignore[union-attr]


# ---------------------------------------------------------------------- JWT-12 .. JWT-16


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "sub", "jti", "ga4gh_visa_v1"])
def test_jwt12_missing_visa_claims(verifier: Verifier, issuer: Signer, broker: Signer, claim: str) -> None:
    bad = forge(issuer.header(), visa_claims(ISS, **{claim: DROP}), issuer.key.private)
    ignored(verifier, broker, bad, issuer.visa(), Reason.MISSING_CLAIM)


@pytest.mark.parametrize("member", ["type", "asserted", "value", "source"])
def test_jwt12_missing_visa_object_members(verifier: Verifier, issuer: Signer, broker: Signer, member: str) -> None:
    obj = visa_object()
    del obj[member]
    ignored(verifier, broker, issuer.visa(visa=obj), issuer.visa(), Reason.MISSING_CLAIM)


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "sub", "jti", "ga4gh_passport_v1"])
def test_jwt12_missing_passport_claims(verifier: Verifier, broker: Signer, claim: str) -> None:
    refused(
        verifier.verify_passport(forge(PASSPORT_HEADER, passport_claims(**{claim: DROP}), broker.key.private)),
        Reason.MISSING_CLAIM,
    )


LEEWAY = LimitSettings().clock_leeway_seconds


@pytest.mark.parametrize(
    "claims,reason",
    [
        ({"exp": NOW - LEEWAY - 1}, Reason.EXPIRED),
        ({"exp": NOW - LEEWAY}, Reason.EXPIRED),
        ({"nbf": NOW + LEEWAY + 1}, Reason.NOT_YET_VALID),
        ({"iat": NOW + LEEWAY + 1, "exp": NOW + 3600}, Reason.ISSUED_IN_FUTURE),
        ({"exp": NOW + 1}, None),
        ({"exp": NOW - LEEWAY + 1}, None),
        ({"nbf": NOW + LEEWAY}, None),
        ({"iat": NOW + LEEWAY, "exp": NOW + 3600}, None),
    ],
    ids=[
        "exp-past-leeway",
        "exp-at-leeway",
        "nbf-future",
        "iat-future",
        "exp-now+1",
        "exp-in-leeway",
        "nbf-at-leeway",
        "iat-at-leeway",
    ],
)
def test_jwt13_time_boundaries(
    verifier: Verifier, issuer: Signer, broker: Signer, claims: dict[str, Any], reason: Reason | None
) -> None:
    claims = {"iat": NOW - 7200, **claims}
    visa = issuer.visa(**claims)
    passport = forge(PASSPORT_HEADER, passport_claims(**claims), broker.key.private)
    if reason is None:
        assert isinstance(verifier.verify_visa(visa), Visa)
        assert verifier.verify_passport(passport).ok
    else:
        ignored(verifier, broker, visa, issuer.visa(), reason)
        refused(verifier.verify_passport(passport), reason)


def test_jwt13_exp_equal_to_now_without_leeway(issuer: Signer, broker: Signer) -> None:
    verifier = make_verifier(trust_config([issuer], [broker]), limits=LimitSettings(clock_leeway_seconds=0))
    visa_refused(verifier.verify_visa(issuer.visa(exp=NOW)), Reason.EXPIRED)
    assert isinstance(verifier.verify_visa(issuer.visa(exp=NOW + 1)), Visa)


@pytest.mark.parametrize(
    "raw",
    [
        b'"9999999999"',
        b"99999999999999999999999",
        b"1e400",
        b"Infinity",
        b"NaN",
        b"true",
        b"-1",
        b"1.5",
        b"null",
        b"1e3",
        b"[1700000000]",
    ],
)
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_jwt14_absurd_numeric_dates(verifier: Verifier, issuer: Signer, broker: Signer, raw: bytes, claim: str) -> None:
    claims = visa_claims(ISS, exp=NOW + 3600, iat=NOW - 60)
    claims[claim] = "__X__"
    payload = json.dumps(claims).replace('"__X__"', raw.decode()).encode()
    rejection = ignored(verifier, broker, forge(issuer.header(), payload, issuer.key.private), issuer.visa(), None)
    assert rejection.reason in (Reason.BAD_CLAIM, Reason.MALFORMED)
    passport = passport_claims()
    passport[claim] = "__X__"
    body = json.dumps(passport).replace('"__X__"', raw.decode()).encode()
    assert refused(verifier.verify_passport(forge(PASSPORT_HEADER, body, broker.key.private)), None).reason in (
        Reason.BAD_CLAIM,
        Reason.MALFORMED,
    )


def test_jwt14_inspect_renders_a_huge_exp_without_crashing(verifier: Verifier, issuer: Signer) -> None:
    from broker.cli.passport import inspect_token

    report = inspect_token(verifier, issuer.visa(exp=10**20), None, 1 << 20)
    assert "100000000000000000000" in render_report(report)


@pytest.mark.parametrize(
    "aud,audience,ok",
    [
        (DROP, "https://ch.example", True),
        ("https://ch.example", "https://ch.example", True),
        (["https://other.example", "https://ch.example"], "https://ch.example", True),
        ("https://other.example", "https://ch.example", False),
        (BROKER, "https://ch.example", False),
        (["https://ch.example/"], "https://ch.example", False),
        (["https://CH.example"], "https://ch.example", False),
    ],
    ids=["absent", "exact", "in-list", "other", "issuer-as-aud", "trailing-slash", "case"],
)
def test_jwt15_passport_audience(verifier: Verifier, broker: Signer, aud: Any, audience: str, ok: bool) -> None:
    result = verifier.verify_passport(
        forge(PASSPORT_HEADER, passport_claims(aud=aud), broker.key.private), audience=audience
    )
    if ok:
        assert result.ok
    else:
        refused(result, Reason.BAD_AUDIENCE)


@pytest.mark.parametrize(
    "iss",
    [
        "https://issuer.test",
        "https://issuer.test//",
        "https://ISSUER.test/",
        "https://",
        "https://issuer.test/x",
        " https://issuer.test/",
        "https://issuer.test/\u200b",
    ],
)
def test_jwt16_issuer_compared_exactly(verifier: Verifier, issuer: Signer, broker: Signer, iss: str) -> None:
    ignored(
        verifier,
        broker,
        forge(issuer.header(), visa_claims(iss), issuer.key.private),
        issuer.visa(),
        Reason.UNTRUSTED_ISSUER,
    )
    refused(
        verifier.verify_passport(
            forge(PASSPORT_HEADER, passport_claims(iss=iss.replace("issuer", "broker2")), broker.key.private)
        ),
        Reason.UNTRUSTED_ISSUER,
    )


def test_jwt16_keys_are_scoped_to_the_claimed_issuer(servers: tuple[JwksServer, JwksServer], broker: Signer) -> None:
    server_a, server_b = servers
    a = fetched(Signer("https://issuer-a.test/", TestKey.generate("ES256", "shared-kid")), server_a)
    b = fetched(Signer("https://issuer-b.test/", TestKey.generate("ES256", "shared-kid")), server_b)
    verifier = jku_verifier([a, b], server_a, [broker])
    claims_b_signed_by_a = forge({"alg": "ES256", "kid": "shared-kid", "jku": b.jku}, visa_claims(b.iss), a.key.private)
    visa_refused(verifier.verify_visa(claims_b_signed_by_a), Reason.BAD_SIGNATURE)
    assert server_a.hits() == 0 and server_b.hits("/jwks.json") == 1
    assert isinstance(verifier.verify_visa(a.visa()), Visa) and isinstance(verifier.verify_visa(b.visa()), Visa)


def test_jwt17_transplanted_visa_not_combined_without_a_link(
    verifier: Verifier, issuer: Signer, broker: Signer
) -> None:
    """Alice's conditioned grant cannot lean on Bob's visa; a trusted LinkedIdentities visa changes that."""
    grant = issuer.visa(
        "alice",
        visa_object(
            value="https://ega.example/datasets/EGAD2",
            conditions=[[{"type": "AffiliationAndRole", "value": "const:faculty@uni.example"}]],
        ),
    )
    bobs = issuer.visa("bob", visa_object(type="AffiliationAndRole", value="faculty@uni.example", by="so"))
    result = verifier.verify_passport(broker.passport([grant, bobs], sub="alice"))
    assert [r.reason for r in result.rejected] == [Reason.CONDITIONS_UNMET]
    assert result.accepted[0].identity == (ISS, "bob")  # accepted on its own, under Bob's identity
    link = issuer.visa(
        "alice", visa_object(type="LinkedIdentities", value="bob,https%3A%2F%2Fissuer.test%2F", source=ISS, by="system")
    )
    assert verifier.verify_passport(broker.passport([grant, bobs, link], sub="alice")).rejected == ()


# ---------------------------------------------------------------------- JWT-18 .. JWT-22


def test_jwt18_unknown_kid_storm_fetches_at_most_once_per_cooldown(
    servers: tuple[JwksServer, JwksServer], issuer: Signer, broker: Signer
) -> None:
    server, _ = servers
    signer = fetched(issuer, server)
    verifier = jku_verifier([signer], server, [broker], fetch=JwksFetchSettings(unknown_kid_cooldown_seconds=60))
    assert isinstance(verifier.verify_visa(signer.visa()), Visa)
    started = time.monotonic()
    for i in range(300):
        token = forge(signer.header(kid=f"random-{i}"), visa_claims(ISS), issuer.key.private)
        visa_refused(verifier.verify_visa(token), Reason.KEY_NOT_FOUND)
    assert server.hits("/jwks.json") <= 2
    assert time.monotonic() - started < 10
    assert isinstance(verifier.verify_visa(signer.visa()), Visa)  # the good key is still cached


@pytest.mark.parametrize("where", ["header", "payload", "visa_object"])
def test_jwt19_duplicate_members_refused(verifier: Verifier, issuer: Signer, broker: Signer, where: str) -> None:
    claims = json.dumps(visa_claims(ISS, sub="alice"))
    header = json.dumps(issuer.header())
    if where == "header":
        header = header[:-1] + ', "alg": "none"}'
    elif where == "payload":
        claims = claims[:-1] + ', "sub": "admin"}'
    else:
        claims = claims.replace('"ga4gh_visa_v1": {', '"ga4gh_visa_v1": {"value": "https://x.example/", ')
    bad = forge(header.encode(), claims.encode(), issuer.key.private)
    ignored(verifier, broker, bad, issuer.visa(), Reason.DUPLICATE_KEY)
    body = json.dumps(passport_claims())[:-1] + ', "sub": "admin"}'
    refused(verifier.verify_passport(forge(PASSPORT_HEADER, body.encode(), broker.key.private)), Reason.DUPLICATE_KEY)


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b'"str"',
        b"123",
        b"\xff\xfe\xfd",
        b"\xef\xbb\xbf{}",
        b'{"sub":"\xc0\xaf"}',
        b'{"sub":"\\ud800"}',
        b'{"sub":"a\\u0000b"}',
        b"not json",
    ],
)
def test_jwt20_not_json_objects_refused(verifier: Verifier, issuer: Signer, broker: Signer, payload: bytes) -> None:
    ignored(verifier, broker, forge(issuer.header(), payload, issuer.key.private), issuer.visa(), Reason.MALFORMED)
    refused(verifier.verify_passport(forge(PASSPORT_HEADER, payload, broker.key.private)), Reason.MALFORMED)


def test_jwt21_dos_shapes_refused_fast(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    started = time.monotonic()
    deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    ignored(verifier, broker, forge(issuer.header(), deep, issuer.key.private), issuer.visa(), Reason.TOO_LARGE)
    refused(verifier.verify_passport(forge(PASSPORT_HEADER, deep, broker.key.private)), Reason.TOO_DEEP)
    deep_header = b'{"alg":"ES256","x":' + b"[" * 200 + b"]" * 200 + b"}"
    ignored(verifier, broker, forge(deep_header, visa_claims(ISS), issuer.key.private), issuer.visa(), Reason.TOO_DEEP)
    huge = "x" * 20_000_000
    refused(verifier.verify_passport(huge), Reason.TOO_LARGE)
    visa_refused(verifier.verify_visa(huge), Reason.TOO_LARGE)
    many = forge(PASSPORT_HEADER, passport_claims(ga4gh_passport_v1=["a.b.c"] * 10_000), broker.key.private)
    refused(verifier.verify_passport(many), Reason.TOO_MANY_VISAS)
    for parts in (4, 5):
        token = ".".join([encode_part(issuer.header())] + ["AAAA"] * (parts - 1))
        visa_refused(verifier.verify_visa(token), Reason.MALFORMED)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "change",
    [
        "pad-sig",
        "pad-payload",
        "plus",
        "slash",
        "newline",
        "space",
        "trailing-bits",
        "empty-payload",
        "empty-signature",
    ],
)
def test_jwt22_bad_base64url_refused(verifier: Verifier, issuer: Signer, broker: Signer, change: str) -> None:
    token = issuer.visa()
    head, payload, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bad = {
        "pad-sig": f"{head}.{payload}.{sig}==",
        "pad-payload": f"{head}.{payload}{'=' * (-len(payload) % 4) or '='}.{sig}",
        "plus": f"{head}.{payload}.{sig.replace('-', '+').replace('_', '/')}"
        if ("-" in sig or "_" in sig)
        else f"{head}.{payload}.+{sig[1:]}",
        "slash": f"{head}.{payload}.{sig[:-2]}/{sig[-1]}",
        "newline": f"{head}.{payload[:10]}\n{payload[10:]}.{sig}",
        "space": f"{head} .{payload}.{sig}",
        "trailing-bits": f"{head}.{payload}.{sig[:-1]}{alphabet[alphabet.index(sig[-1]) | 1]}",
        "empty-payload": f"{head}..{sig}",
        "empty-signature": f"{head}.{payload}.",
    }[change]
    expected = Reason.BAD_SIGNATURE if change == "empty-signature" else Reason.MALFORMED
    ignored(verifier, broker, bad, issuer.visa(), expected)


# ---------------------------------------------------------------------- JWT-23 .. JWT-24


def _twin(token: str) -> str:
    head, _, sig = token.rpartition(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    s = int.from_bytes(raw[32:], "big")
    return f"{head}.{b64(raw[:32] + (P256_ORDER - s).to_bytes(32, 'big'))}"


def test_jwt23_ecdsa_signature_formats(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    token = issuer.visa()
    head = token.rsplit(".", 1)[0]
    der = issuer.key.private.sign(head.encode(), ec.ECDSA(hashes.SHA256()))
    for signature in (der, bytes(64), bytes(63), bytes(65), sign_es256(issuer.key.private, head.encode())[:-1]):
        ignored(verifier, broker, f"{head}.{b64(signature)}", issuer.visa(), Reason.BAD_SIGNATURE)


def test_jwt23_high_s_twin_of_a_revoked_visa_is_still_revoked(issuer: Signer, broker: Signer) -> None:
    revoked: set[str] = set()
    cache = VerifiedCache(100)
    verifier = make_verifier(trust_config([issuer], [broker]), revoked=revoked.__contains__, cache=cache)
    token = issuer.visa(jti="to-revoke")
    assert isinstance(verifier.verify_visa(token), Visa)
    twin = _twin(token)
    assert isinstance(verifier.verify_visa(twin), Visa)  # mathematically valid: a second spelling exists
    revoked.add("to-revoke")
    cache.evict_jti("to-revoke")
    for presented in (token, twin):
        ignored(verifier, broker, presented, issuer.visa(), Reason.REVOKED)


def _serve_keys(server: JwksServer, *jwks: dict[str, Any]) -> None:
    server.serve_jwks({"keys": list(jwks)})


@pytest.mark.parametrize("weakness", ["rsa-1024", "rsa-e3", "oct", "ec-not-on-curve", "private-members"])
def test_jwt24_weak_key_material_from_a_trusted_issuer(
    servers: tuple[JwksServer, JwksServer], broker: Signer, weakness: str
) -> None:
    server, _ = servers
    if weakness == "rsa-1024":
        key = TestKey("weak", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505
        jwk = key.jwk()
    elif weakness == "rsa-e3":
        key = TestKey("weak", "RS256", rsa.generate_private_key(public_exponent=3, key_size=2048))
        jwk = key.jwk()
    elif weakness == "oct":
        key = TestKey.generate("ES256", "weak")
        jwk = {"kty": "oct", "k": b64(b"secret" * 6), "kid": "weak", "alg": "HS256"}
    elif weakness == "ec-not-on-curve":
        key = TestKey.generate("ES256", "weak")
        jwk = {
            **key.jwk(),
            "y": b64((int.from_bytes(base64.urlsafe_b64decode(key.jwk()["y"] + "=="), "big") ^ 1).to_bytes(32, "big")),
        }
    else:
        key = TestKey.generate("ES256", "weak")
        jwk = {**key.jwk(), "d": b64(key.private.private_numbers().private_value.to_bytes(32, "big"))}
    _serve_keys(server, jwk)
    signer = Signer("https://weak.test/", key, server.url("/jwks.json"))
    verifier = jku_verifier([signer], server, [broker])
    rejection = verifier.verify_visa(signer.visa())
    assert isinstance(rejection, Rejection) and rejection.reason in (Reason.KEY_NOT_FOUND, Reason.BAD_ALG)
    assert rejection.iss == "https://weak.test/"


# ---------------------------------------------------------------------- JWT-25


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_jwt25_hmac_tokens_are_refused_whatever_the_secret(
    verifier: Verifier, issuer: Signer, broker: Signer, alg: str
) -> None:
    """No HS* in the visa/passport path: refused on ``alg`` alone, strong secret or weak, at EPM e and f."""
    assert not {a for a in ALLOWED_ALGORITHMS if not a.startswith(("RS", "ES"))}
    for secret in (secrets.token_bytes(64), b"secret", b""):
        visa = _hmac_token(issuer.header(alg=alg), visa_claims(ISS), secret, alg)
        ignored(verifier, broker, visa, issuer.visa(), Reason.BAD_ALG)
        visa_refused(verifier.verify_visa(visa), Reason.BAD_ALG)
        passport = _hmac_token({**PASSPORT_HEADER, "alg": alg}, passport_claims(), secret, alg)
        refused(verifier.verify_passport(passport), Reason.BAD_ALG)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "HS256"])
def test_jwt25_a_secret_is_never_a_verification_key(alg: str) -> None:
    """Even a caller handing jose an HMAC secret as the key gets a refusal, not an HMAC check."""
    for secret in (secrets.token_bytes(32), "secret", b""):
        with pytest.raises(JoseError) as caught:
            check_key(alg, secret)
        assert caught.value.reason is Reason.BAD_ALG


def test_jwt25_no_module_of_the_visa_and_passport_path_can_compute_an_hmac() -> None:
    """Grep-test over broker/ga4gh: nothing imports an HMAC implementation or a JWT library that has one."""
    offenders = []
    for path in sorted((ROOT / "broker" / "ga4gh").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                module = "." * node.level + node.module  # a relative import never names a library
                names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if "hmac" in parts or parts[0] in {"jwt", "jose", "jwcrypto", "authlib"}:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert offenders == []


# ---------------------------------------------------------------------- JWT-26 .. JWT-31


def test_jwt26_jwe_and_compression_refused_fast(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    started = time.monotonic()
    jwe_header = encode_part({"alg": "RSA-OAEP", "enc": "A256GCM"})
    for token in (
        f"{jwe_header}.AAAA.AAAA.AAAA.AAAA",
        f"{encode_part({'alg': 'dir', 'enc': 'A128GCM'})}....",
        forge({"alg": "PBES2-HS512+A256KW", "p2c": 2**31}, visa_claims(ISS), signature=b"x"),
        forge({"alg": "RSA1_5"}, visa_claims(ISS), signature=b"x"),
    ):
        rejection = ignored(verifier, broker, token, issuer.visa(), None)
        assert rejection.reason in (Reason.MALFORMED, Reason.BAD_ALG)
    zipped = forge({**issuer.header(), "zip": "DEF"}, visa_claims(ISS), issuer.key.private)
    ignored(verifier, broker, zipped, issuer.visa(), Reason.MALFORMED)
    enc = forge({**issuer.header(), "enc": "A256GCM"}, visa_claims(ISS), issuer.key.private)
    ignored(verifier, broker, enc, issuer.visa(), Reason.MALFORMED)
    assert time.monotonic() - started < 1


def test_jwt27_b64_false_detached_and_json_serialization(verifier: Verifier, issuer: Signer, broker: Signer) -> None:
    b64_false = forge({**issuer.header(), "b64": False, "crit": ["b64"]}, visa_claims(ISS), issuer.key.private)
    ignored(verifier, broker, b64_false, issuer.visa(), Reason.CRIT_UNSUPPORTED)
    head, _, sig = issuer.visa().split(".")
    ignored(verifier, broker, f"{head}..{sig}", issuer.visa(), Reason.MALFORMED)
    token = issuer.visa()
    h, p, s = token.split(".")
    flattened = json.dumps({"protected": h, "payload": p, "signature": s})
    general = json.dumps({"payload": p, "signatures": [{"protected": h, "signature": s}]})
    for serialized in (flattened, general):
        ignored(verifier, broker, serialized, issuer.visa(), Reason.MALFORMED)
        refused(verifier.verify_passport(serialized), Reason.MALFORMED)


@pytest.mark.parametrize(
    "claim,value",
    [
        ("sub", 123),
        ("sub", ["a"]),
        ("iss", ["https://issuer.test/"]),
        ("jti", {}),
        ("aud", 5),
        ("iss", 7),
    ],
)
def test_jwt28_wrong_json_types_refused(
    verifier: Verifier, issuer: Signer, broker: Signer, claim: str, value: Any
) -> None:
    bad = forge(issuer.header(), visa_claims(ISS, **{claim: value}), issuer.key.private)
    ignored(verifier, broker, bad, issuer.visa(), Reason.BAD_CLAIM)
    refused(
        verifier.verify_passport(forge(PASSPORT_HEADER, passport_claims(**{claim: value}), broker.key.private)),
        Reason.BAD_CLAIM,
    )


@pytest.mark.parametrize("skew,reason", [(+300, Reason.ISSUED_IN_FUTURE), (-300, None), (+30, None)])
def test_jwt30_clock_skewed_issuer(issuer: Signer, broker: Signer, skew: int, reason: Reason | None) -> None:
    verifier = make_verifier(trust_config([issuer], [broker]), now=NOW)
    issuer_now = NOW + skew
    visa = issuer.visa(iat=issuer_now, exp=issuer_now + 3600, visa=visa_object(asserted=issuer_now - 10))
    if reason is None:
        assert isinstance(verifier.verify_visa(visa), Visa)
    else:
        ignored(verifier, broker, visa, issuer.visa(), reason)


def test_jwt31_revocation_keys_on_jti_not_on_the_token_string(issuer: Signer, broker: Signer) -> None:
    revoked: set[str] = set()
    cache = VerifiedCache(100)
    verifier = make_verifier(trust_config([issuer], [broker]), revoked=revoked.__contains__, cache=cache)
    token = issuer.visa(jti="leaked")
    passport = broker.passport([token])
    assert len(verifier.verify_passport(passport).accepted) == 1
    revoked.add("leaked")
    assert cache.evict_jti("leaked") == 2
    variants = {
        "same": (token, Reason.REVOKED),
        "high-s-twin": (_twin(token), Reason.REVOKED),
        "padded": (f"{token}==", Reason.MALFORMED),
        "re-signed": (issuer.visa(jti="leaked"), Reason.REVOKED),  # a fresh signature over the same jti
    }
    for name, (variant, reason) in variants.items():
        verdict = verifier.verify_visa(variant)
        assert isinstance(verdict, Rejection) and verdict.reason is reason, name
