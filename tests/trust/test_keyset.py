"""JWK parsing and key choice: the rules of broker.trust.keyset, including hostile members (JWT-03, JWT-24)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.models import Reason
from broker.trust.keyset import (
    JwksFormatError,
    KeyResolutionError,
    ResolvedKey,
    decode_json,
    key_misfit,
    parse_jwks,
    parse_key,
    select_key,
)
from tests.support.jwks_server import TestKey


def _p256_off_curve(key: TestKey) -> dict[str, Any]:
    jwk = key.public_jwk()
    y = bytearray(jwk["y"].encode())
    y[5] = ord("A") if y[5] != ord("A") else ord("B")
    return {**jwk, "y": y.decode()}


def test_parses_ec_and_rsa_public_keys(ec1: TestKey, rsa1: TestKey) -> None:
    e = parse_key(ec1.public_jwk())
    r = parse_key(rsa1.public_jwk())
    assert (e.kid, e.alg, r.kid, r.alg) == ("ec-1", "ES256", "rsa-1", "RS256")
    assert isinstance(e.key, ec.EllipticCurvePublicKey) and isinstance(r.key, rsa.RSAPublicKey)
    assert key_misfit(e, "ES256") is None and key_misfit(r, "RS256") is None


def test_alg_inferred_when_jwk_has_none(ec1: TestKey, rsa1: TestKey) -> None:
    assert parse_key(ec1.public_jwk(alg=None)).alg == "ES256"
    assert parse_key(rsa1.public_jwk(alg=None)).alg == "RS256"
    assert parse_key(ec1.public_jwk(kid=None)).kid == ""


@pytest.mark.parametrize(
    "name,mutate,why",
    [
        ("not an object", lambda j: ["x"], "not a JSON object"),
        ("no kty", lambda j: {k: v for k, v in j.items() if k != "kty"}, "kty"),
        ("kty number", lambda j: {**j, "kty": 1}, "kty"),
        ("oct", lambda j: {"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, "symmetric"),
        (
            "OKP",
            lambda j: {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            "EC and RSA only",
        ),
        ("private d", lambda j: {**j, "d": "AAAA"}, "private"),
        ("use enc", lambda j: {**j, "use": "enc"}, "use"),
        ("use number", lambda j: {**j, "use": 1}, "use"),
        ("key_ops sign only", lambda j: {**j, "key_ops": ["sign"]}, "key_ops"),
        ("key_ops not list", lambda j: {**j, "key_ops": "verify"}, "key_ops"),
        ("kid number", lambda j: {**j, "kid": 7}, "kid"),
        ("alg number", lambda j: {**j, "alg": 256}, "alg"),
        ("alg HS256 on EC", lambda j: {**j, "alg": "HS256"}, "invalid EC key"),
        ("alg RS256 on EC", lambda j: {**j, "alg": "RS256"}, "invalid EC key"),
        ("alg unknown", lambda j: {**j, "alg": "XX999"}, "invalid EC key"),
        ("bad x", lambda j: {**j, "x": "!!!"}, "invalid EC key"),
        ("x number", lambda j: {**j, "x": 5}, "invalid EC key"),
        ("no y", lambda j: {k: v for k, v in j.items() if k != "y"}, "invalid EC key"),
        ("crv unknown", lambda j: {**j, "crv": "P-999"}, "invalid EC key"),
    ],
)
def test_unusable_jwk_refused_with_reason(ec1: TestKey, name: str, mutate: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_key(mutate(ec1.public_jwk()))


def test_jwt24_ec_point_not_on_curve_refused(ec1: TestKey) -> None:
    with pytest.raises(ValueError, match="invalid EC key"):
        parse_key(_p256_off_curve(ec1))


def test_jwt24_rsa_bad_exponents(rsa1: TestKey) -> None:
    with pytest.raises(ValueError, match="invalid RSA key"):
        parse_key(rsa1.public_jwk(e="AQ"))  # e = 1
    e3 = rsa.generate_private_key(public_exponent=3, key_size=2048).public_key()
    key = ResolvedKey("rsa-e3", "RS256", e3)
    assert "exponent" in str(key_misfit(key, "RS256"))


def test_jwt24_weak_rsa_and_wrong_curve_do_not_fit() -> None:
    weak_private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - weak on purpose
    weak = ResolvedKey("w", "RS256", weak_private.public_key())
    assert "RSA-1024" in str(key_misfit(weak, "RS256"))
    p384 = ResolvedKey("p", "ES256", ec.generate_private_key(ec.SECP384R1()).public_key())
    assert "P-256" in str(key_misfit(p384, "ES256"))


def test_key_fits_only_its_own_alg(ec1: TestKey, rsa1: TestKey) -> None:
    e, r = parse_key(ec1.public_jwk()), parse_key(rsa1.public_jwk())
    assert key_misfit(e, "RS256") and key_misfit(r, "ES256")
    assert key_misfit(e, "HS256") and key_misfit(e, "none")
    # An RSA object labelled ES256 (a hand-made ResolvedKey) still does not fit ES256.
    assert key_misfit(ResolvedKey("x", "ES256", r.key), "ES256")


def test_private_material_never_in_reasons(ec2: TestKey) -> None:
    keyset = parse_jwks({"keys": [{**ec2.public_jwk(), "d": ec2.private_jwk()["d"]}]}, max_keys=5)
    assert keyset.keys == () and ec2.private_jwk()["d"] not in keyset.ignored[0]


def test_select_key_rules(ec1: TestKey, ec2: TestKey, rsa1: TestKey) -> None:
    keys = [parse_key(ec1.public_jwk()), parse_key(ec2.public_jwk()), parse_key(rsa1.public_jwk())]
    assert select_key(keys, "ec-2", "ES256", "here").kid == "ec-2"
    for alg in ("RS256", "ES256"):  # several keys: no kid is refused, even where only one key fits
        with pytest.raises(KeyResolutionError) as info:
            select_key(keys, None, alg, "here")
        assert info.value.reason is Reason.KID_REQUIRED
    assert select_key(keys[2:], None, "RS256", "here").kid == "rsa-1"  # the one key of its set
    with pytest.raises(KeyResolutionError) as info:
        select_key(keys[2:], None, "ES256", "here")  # the one key does not fit
    assert info.value.reason is Reason.KEY_NOT_FOUND
    with pytest.raises(KeyResolutionError) as info:
        select_key(keys, "rsa-1", "ES256", "here")
    assert info.value.reason is Reason.BAD_ALG
    with pytest.raises(KeyResolutionError) as info:
        select_key(keys, "", "ES256", "here")
    assert info.value.reason is Reason.KEY_NOT_FOUND
    # Keys without kid are reachable only through the "no kid, exactly one key" rule.
    nameless = [parse_key(ec1.public_jwk(kid=None))]
    assert select_key(nameless, None, "ES256", "here").kid == ""
    with pytest.raises(KeyResolutionError):
        select_key(nameless, "", "ES256", "here")


@pytest.mark.parametrize(
    "text,why",
    [
        (b'{"a": 1, "a": 2}', "duplicate"),
        (b'{"keys": [Infinity]}', "Infinity"),
        (b'{"keys": [-Infinity]}', "Infinity"),
        (b"[" * 50_000 + b"]" * 50_000, "nested"),
        (b"\xc3\x28", "UTF-8"),
        (b"", "not valid JSON"),
        (b'{"keys": []} trailing', "not valid JSON"),
    ],
)
def test_decode_json_is_strict(text: bytes, why: str) -> None:
    with pytest.raises(JwksFormatError, match=why):
        decode_json(text)


def test_parse_jwks_shape_and_key_limit(ec1: TestKey) -> None:
    for bad in ([], {}, {"keys": None}, {"keys": {}}, "keys", None, 3):
        with pytest.raises(JwksFormatError):
            parse_jwks(bad, max_keys=5)
    assert parse_jwks({"keys": []}, max_keys=5).keys == ()
    assert len(parse_jwks({"keys": [ec1.public_jwk()] * 5}, max_keys=5).keys) == 5
    with pytest.raises(JwksFormatError, match="6 keys"):
        parse_jwks({"keys": [ec1.public_jwk()] * 6}, max_keys=5)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_member_names = st.sampled_from(["kty", "crv", "x", "y", "n", "e", "kid", "alg", "use", "key_ops", "d", "k", "x5c"])
_jwk_like = st.dictionaries(
    _member_names, _json | st.sampled_from(["EC", "RSA", "P-256", "AQAB", "sig", "ES256"]), max_size=8
)


@settings(max_examples=150, deadline=None)
@given(document=_json | st.fixed_dictionaries({"keys": st.lists(_jwk_like | _json, max_size=6)}))
def test_hostile_documents_only_raise_format_errors(document: Any) -> None:
    try:
        keyset = parse_jwks(document, max_keys=5)
    except JwksFormatError:
        return
    for key in keyset.keys:
        assert isinstance(key.key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)


@settings(max_examples=150, deadline=None)
@given(jwk=_jwk_like, ec_base=st.booleans())
def test_hostile_jwk_members_only_raise_value_error(
    jwk: dict[str, Any], ec_base: bool, ec1: TestKey, rsa1: TestKey
) -> None:
    base = (ec1 if ec_base else rsa1).public_jwk()
    try:
        key = parse_key({**base, **jwk})
    except ValueError:
        return
    assert isinstance(key.key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
