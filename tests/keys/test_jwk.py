"""RFC 7638 thumbprints (our kids) and the public JWKs they are computed from."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey, RSAKey

from broker.keys.jwk import (
    JwkError,
    b64url_decode,
    b64url_encode,
    public_jwk,
    public_key_from_jwk,
    thumbprint,
    thumbprint_input,
)

# RFC 7638 section 3.1: the example RSA key and its published SHA-256 thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjh"
    "Mstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvR"
    "L5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_JWK = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rfc7638_section_3_1_example_thumbprint() -> None:
    assert thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT


def test_rfc7638_input_is_required_members_sorted_without_whitespace() -> None:
    assert thumbprint_input(RFC7638_JWK) == f'{{"e":"AQAB","kty":"RSA","n":"{RFC7638_N}"}}'.encode()


def test_thumbprint_ignores_optional_members_and_member_order() -> None:
    reordered = {"e": "AQAB", "use": "sig", "n": RFC7638_N, "kty": "RSA", "x5t": "abc"}
    assert thumbprint(reordered) == RFC7638_THUMBPRINT


def test_rfc7638_example_key_round_trips_through_our_jwk_encoding() -> None:
    key = public_key_from_jwk(RFC7638_JWK)
    assert public_jwk(key) == {"kty": "RSA", "n": RFC7638_N, "e": "AQAB"}


def test_ec_thumbprint_is_the_hash_of_crv_kty_x_y() -> None:
    jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    expected = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":")).encode()
    assert thumbprint_input(jwk) == expected
    assert thumbprint(jwk) == b64url_encode(hashlib.sha256(expected).digest())


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=P256_ORDER - 1))
def test_ec_thumbprints_match_joserfc(scalar: int) -> None:
    """Differential check against an independent implementation (joserfc), small scalars included."""
    private = ec.derive_private_key(scalar, ec.SECP256R1())
    jwk = public_jwk(private.public_key())
    assert thumbprint(jwk) == ECKey.import_key(jwk).thumbprint()


def test_rsa_thumbprints_match_joserfc() -> None:
    for _ in range(3):
        jwk = public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
        assert thumbprint(jwk) == RSAKey.import_key(jwk).thumbprint()


def test_ec_coordinates_keep_leading_zero_octets() -> None:
    """RFC 7518 section 6.2.1.2: x and y are always 32 octets on P-256, even with a leading zero."""
    for _ in range(20_000):
        private = ec.generate_private_key(ec.SECP256R1())
        if private.public_key().public_numbers().x < 2**248:
            break
    else:
        pytest.fail("no key with a short x coordinate in 20,000 tries")
    jwk = public_jwk(private.public_key())
    assert len(b64url_decode(jwk["x"])) == 32
    assert b64url_decode(jwk["x"])[0] == 0
    assert thumbprint(jwk) == ECKey.import_key(jwk).thumbprint()
    assert public_key_from_jwk(jwk).public_numbers() == private.public_key().public_numbers()


def test_rsa_members_have_no_leading_zero_octets() -> None:
    jwk = public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    assert jwk["e"] == "AQAB"
    assert b64url_decode(jwk["n"])[0] != 0
    assert len(b64url_decode(jwk["n"])) == 256


@pytest.mark.parametrize(
    ("jwk", "problem"),
    [
        ({"kty": "oct", "k": "AAAA"}, "unsupported or missing kty"),
        ({"n": RFC7638_N, "e": "AQAB"}, "unsupported or missing kty"),
        ({"kty": "RSA", "n": RFC7638_N}, "'e' is missing"),
        ({"kty": "RSA", "n": RFC7638_N, "e": 65537}, "'e' is missing or not a string"),
        ({"kty": "RSA", "n": RFC7638_N, "e": 'AQAB","kty":"EC'}, "characters"),
        ({"kty": "RSA", "n": RFC7638_N, "e": "AQ AB"}, "characters"),
        ({"kty": "EC", "crv": "P-256", "x": "AAAA"}, "'y' is missing"),
    ],
)
def test_thumbprint_refuses_keys_it_cannot_describe_exactly(jwk: dict[str, object], problem: str) -> None:
    with pytest.raises(JwkError, match=problem):
        thumbprint(jwk)


def test_jwt24_public_key_from_jwk_refuses_private_members() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(private.public_key())
    jwk["d"] = b64url_encode(private.private_numbers().private_value.to_bytes(32, "big"))
    with pytest.raises(JwkError, match="private members"):
        public_key_from_jwk(jwk)


def test_jwt24_public_key_from_jwk_refuses_short_rsa() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 (the point)
    with pytest.raises(JwkError, match="1024 bits"):
        public_key_from_jwk(public_jwk(weak))


def test_public_key_from_jwk_refuses_point_not_on_curve() -> None:
    jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    y = int.from_bytes(b64url_decode(jwk["y"]), "big")
    jwk["y"] = b64url_encode(((y + 1) % 2**256).to_bytes(32, "big"))
    with pytest.raises(JwkError, match="not on P-256"):
        public_key_from_jwk(jwk)


def test_public_key_from_jwk_refuses_wrong_coordinate_length_and_curve() -> None:
    jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(JwkError, match="32 octets"):
        public_key_from_jwk({**jwk, "x": b64url_encode(b"\x00" + b64url_decode(jwk["x"]))})
    with pytest.raises(JwkError, match="only P-256"):
        public_key_from_jwk({**jwk, "crv": "P-384"})


def test_public_jwk_refuses_other_curves() -> None:
    with pytest.raises(JwkError, match="only P-256"):
        public_jwk(ec.generate_private_key(ec.SECP384R1()).public_key())


@pytest.mark.parametrize("text", ["AQAB=", "AQ+B", "AQ/B", "A", "", "AQAC\n", "AQAB\u0000"])
def test_b64url_decode_is_strict(text: str) -> None:
    with pytest.raises(JwkError):
        b64url_decode(text)


def test_b64url_decode_refuses_non_canonical_trailing_bits() -> None:
    assert b64url_decode("AQ") == b"\x01"
    with pytest.raises(JwkError, match="non-canonical"):
        b64url_decode("AR")  # same byte, non-zero unused bits
