"""Private keys at rest in the store: AES-256-GCM under a key derived with scrypt.

When ``keys.storage`` is ``store`` the private keys sit in SQLite or Redis next to
everything else, so they are sealed with ``keys.encryption_secret`` (an operator
passphrase kept out of the store). Each record gets its own random salt and nonce:

    b"GKR1" | salt (16) | nonce (12) | AES-GCM ciphertext of the PKCS#8 PEM + tag (16)

The key-encryption key is scrypt(secret, salt, n=2**15, r=8, p=1) (about 32 MiB and
0.1 s here: affordable because a process decrypts each key once and caches it, and it
makes guessing a weak passphrase from a stolen store dump expensive). The record's kid
and alg are authenticated as associated data, so a ciphertext moved onto another record
fails to open instead of silently signing under the wrong kid.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from broker.keys.errors import KeyDecryptionError

MAGIC = b"GKR1"
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1


def _kek(secret: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(secret.encode("utf-8"))


def _aad(kid: str, alg: str) -> bytes:
    return f"ga4gh-broker signing key\x00{kid}\x00{alg}".encode()


def seal(private_pem: bytes, secret: str, kid: str, alg: str) -> bytes:
    """Encrypt a private key PEM for the record ``kid``/``alg``."""
    if not secret:
        raise ValueError("an encryption secret is required")
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(_kek(secret, salt)).encrypt(nonce, private_pem, _aad(kid, alg))
    return MAGIC + salt + nonce + ciphertext


def unseal(sealed: bytes, secret: str, kid: str, alg: str) -> bytes:
    """Decrypt what :func:`seal` produced; :class:`KeyDecryptionError` on any mismatch."""
    if not secret:
        raise KeyDecryptionError(f"key {kid} is encrypted and keys.encryption_secret is not set")
    if len(sealed) < len(MAGIC) + SALT_BYTES + NONCE_BYTES + TAG_BYTES or not sealed.startswith(MAGIC):
        raise KeyDecryptionError(f"key {kid}: not an encrypted key record (unknown format)")
    salt_at = len(MAGIC)
    nonce_at = salt_at + SALT_BYTES
    ciphertext_at = nonce_at + NONCE_BYTES
    salt, nonce, ciphertext = sealed[salt_at:nonce_at], sealed[nonce_at:ciphertext_at], sealed[ciphertext_at:]
    try:
        return AESGCM(_kek(secret, salt)).decrypt(nonce, ciphertext, _aad(kid, alg))
    except InvalidTag:
        raise KeyDecryptionError(
            f"key {kid} does not decrypt: keys.encryption_secret is wrong, or the stored record was altered"
        ) from None
