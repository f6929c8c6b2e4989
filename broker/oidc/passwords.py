"""Password and client-secret hashing with scrypt (hashlib), and constant-time checks.

Hashes are self-describing strings ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>`` so the
cost can be raised later without breaking stored hashes. Verification recomputes the hash
with the stored parameters and compares with :func:`hmac.compare_digest` (constant time),
and a malformed stored hash is a failed check, never an exception: fail closed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_LOG2_N = 14  # n = 16384, r = 8: 16 MiB of memory per hash, about 50 ms on these machines
_R = 8
_P = 1
_DKLEN = 32
_MAX_LOG2_N = 20  # refuse stored parameters that would exhaust memory


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(plain: str, *, log2_n: int = _LOG2_N) -> str:
    """A fresh salted scrypt hash of ``plain`` for storing."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        plain.encode("utf-8"), salt=salt, n=1 << log2_n, r=_R, p=_P, dklen=_DKLEN, maxmem=256 * 1024 * 1024
    )
    return f"scrypt${log2_n}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(plain: str, stored: str | None) -> bool:
    """True only if ``plain`` hashes to ``stored``; any malformed input is False."""
    if not stored or not isinstance(plain, str):
        return False
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, TypeError):
        return False
    if not (1 <= log2_n <= _MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 4 and len(expected) >= 16):
        return False
    try:
        digest = hashlib.scrypt(
            plain.encode("utf-8"), salt=salt, n=1 << log2_n, r=r, p=p, dklen=len(expected), maxmem=256 * 1024 * 1024
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


def new_secret(nbytes: int = 32) -> str:
    """A random secret for a client (256 bits by default), URL-safe."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """SHA-256 of a high-entropy token (codes, refresh tokens): the key we store instead of it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
