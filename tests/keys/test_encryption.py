"""Sealing private keys for the store: AES-GCM under scrypt(secret, per-record salt)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from broker.keys.encryption import MAGIC, SALT_BYTES, seal, unseal
from broker.keys.errors import KeyDecryptionError

KID = "A" * 43


@pytest.fixture(scope="module")
def pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_round_trip(pem: bytes) -> None:
    assert unseal(seal(pem, "s3cret", KID, "ES256"), "s3cret", KID, "ES256") == pem


def test_ciphertext_shows_nothing_of_the_pem(pem: bytes) -> None:
    sealed = seal(pem, "s3cret", KID, "ES256")
    assert sealed.startswith(MAGIC)
    assert b"PRIVATE KEY" not in sealed
    for line in pem.splitlines()[1:-1]:
        assert line[:16] not in sealed


def test_each_seal_uses_a_fresh_salt_and_nonce(pem: bytes) -> None:
    a, b = seal(pem, "s3cret", KID, "ES256"), seal(pem, "s3cret", KID, "ES256")
    assert a != b
    assert a[len(MAGIC) : len(MAGIC) + SALT_BYTES] != b[len(MAGIC) : len(MAGIC) + SALT_BYTES]


def test_wrong_secret_fails_clearly(pem: bytes) -> None:
    sealed = seal(pem, "s3cret", KID, "ES256")
    with pytest.raises(KeyDecryptionError, match=r"keys\.encryption_secret is wrong"):
        unseal(sealed, "s3cret!", KID, "ES256")


def test_missing_secret_fails_clearly(pem: bytes) -> None:
    with pytest.raises(KeyDecryptionError, match="not set"):
        unseal(seal(pem, "s3cret", KID, "ES256"), "", KID, "ES256")


@pytest.mark.parametrize(("kid", "alg"), [("B" * 43, "ES256"), (KID, "RS256")])
def test_ciphertext_moved_to_another_record_does_not_open(pem: bytes, kid: str, alg: str) -> None:
    sealed = seal(pem, "s3cret", KID, "ES256")
    with pytest.raises(KeyDecryptionError):
        unseal(sealed, "s3cret", kid, alg)


@pytest.mark.parametrize("position", [0, 5, 20, 40, -1])
def test_any_altered_byte_is_detected(pem: bytes, position: int) -> None:
    sealed = bytearray(seal(pem, "s3cret", KID, "ES256"))
    sealed[position] ^= 0x01
    with pytest.raises(KeyDecryptionError):
        unseal(bytes(sealed), "s3cret", KID, "ES256")


PEM_START = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"


@pytest.mark.parametrize("junk", [b"", b"GKR1", PEM_START])
def test_not_a_sealed_record(junk: bytes) -> None:
    with pytest.raises(KeyDecryptionError, match="unknown format"):
        unseal(junk, "s3cret", KID, "ES256")
