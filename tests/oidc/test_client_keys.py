"""Client keys for private_key_jwt follow the same rules as every other key we accept (JWT-24)."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.oidc.client_auth import JWT_BEARER_ASSERTION, ClientAuthenticator, client_keys
from broker.oidc.clients import ClientRegistry
from broker.oidc.errors import OAuthError
from broker.oidc.records import Client
from broker.oidc.repository import OidcRepository
from broker.oidc.settings import DeclaredClientSettings
from broker.settings import Settings
from tests.support.legacy_store import open_store

ISSUER = "https://op.example/"


def _jwk(key: object, **extra: str) -> dict[str, object]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPublicKey) else jwt.algorithms.ECAlgorithm
    return {**algorithm.to_jwk(key, as_dict=True), **extra}


def _client(jwk: dict[str, object]) -> Client:
    return Client(client_id="c", name="c", auth_method="private_key_jwt", jwks={"keys": [jwk]})


def test_jwt24_rsa_client_key_of_2048_bits_is_used() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    found = client_keys(_client(_jwk(key, kid="k")))
    assert found["k"][0] == "RS256" and found["k"][1] is not None


def test_ps256_client_assertions_are_refused_even_with_a_good_key(tmp_path: Path) -> None:
    """Client assertions go through the one JWS path (core/jose), which takes RS256 and ES256 only."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = _jwk(private.public_key(), kid="k")
    declared = DeclaredClientSettings(client_id="c", auth_method="private_key_jwt", jwks={"keys": [jwk]})
    store = open_store(Settings(data_dir=str(tmp_path)))
    try:
        repository = OidcRepository(store.kernel, family_marker_seconds=3600)
        authenticator = ClientAuthenticator(
            ClientRegistry([declared], repository),
            repository,
            issuer=ISSUER,
            leeway=60,
            max_json_depth=16,
            limiter=None,
        )

        def assertion(alg: str) -> dict[str, str]:
            claims = {"iss": "c", "sub": "c", "aud": ISSUER, "exp": int(time.time()) + 60, "jti": alg}
            token = jwt.encode(claims, private, algorithm=alg, headers={"kid": "k"})
            return {"client_assertion_type": JWT_BEARER_ASSERTION, "client_assertion": token}

        assert authenticator.authenticate(assertion("RS256"), None, ISSUER + "token").client.client_id == "c"
        with pytest.raises(OAuthError) as refused:
            authenticator.authenticate(assertion("PS256"), None, ISSUER + "token")
        assert refused.value.code == "invalid_client" and refused.value.status == 401
    finally:
        store.close()


def test_jwt24_weak_rsa_client_key_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 - the attack
    assert client_keys(_client(_jwk(key, kid="k"))) == {}


def test_jwt24_ec_client_key_on_the_wrong_curve_is_refused() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert client_keys(_client(_jwk(p256, kid="k")))["k"][0] == "ES256"
    assert client_keys(_client(_jwk(p384, kid="k"))) == {}


def test_jwt24_client_jwk_with_private_members_is_refused() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(private, as_dict=True)
    assert client_keys(_client({**jwk, "kid": "k"})) == {}
