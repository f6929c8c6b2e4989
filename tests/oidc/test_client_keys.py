"""Client keys for private_key_jwt follow the same rules as every other key we accept (JWT-24)."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.oidc.client_auth import _client_key
from broker.store.base import Client


def _jwk(key: object, **extra: str) -> dict[str, object]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPublicKey) else jwt.algorithms.ECAlgorithm
    return {**algorithm.to_jwk(key, as_dict=True), **extra}


def _client(jwk: dict[str, object]) -> Client:
    return Client(client_id="c", name="c", auth_method="private_key_jwt", jwks={"keys": [jwk]})


def test_jwt24_rsa_client_key_of_2048_bits_is_used() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    assert _client_key(_client(_jwk(key, kid="k")), "k", "RS256") is not None


def test_ps256_client_assertions_are_refused_even_with_a_good_key() -> None:
    """Client assertions go through the one JWS path (core/jose), which takes RS256 and ES256 only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    assert _client_key(_client(_jwk(key, kid="k")), "k", "PS256") is None


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_jwt24_weak_rsa_client_key_is_refused(alg: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 - the attack
    assert _client_key(_client(_jwk(key, kid="k")), "k", alg) is None


def test_jwt24_ec_client_key_on_the_wrong_curve_is_refused() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert _client_key(_client(_jwk(p256, kid="k")), "k", "ES256") is not None
    assert _client_key(_client(_jwk(p384, kid="k")), "k", "ES256") is None


def test_jwt24_client_jwk_with_private_members_is_refused() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(private, as_dict=True)
    assert _client_key(_client({**jwk, "kid": "k"}), "k", "ES256") is None
