"""Password and client-secret hashing, and constant-time checks.

Two self-describing forms, so either can be verified whenever it was written:

- ``hmac-sha256$<mac b64>``: HMAC-SHA-256 of the secret under the server pepper
  (:mod:`broker.keys.pepper`), for the client secrets the broker generates. They are
  high-entropy (256 bits), so a slow KDF protects nothing and only hands anyone who sends
  a guess a lever on our CPU and memory (issue 11 item 2); the pepper keeps a stolen store
  from being enough to test a guess.
- ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``: for human passwords, and every client
  secret hash written before the HMAC form (they keep verifying); the cost can be raised
  later without breaking stored hashes.

Verification recomputes the hash and compares with :func:`hmac.compare_digest` (constant
time); a malformed stored hash, or an HMAC hash with no pepper at hand, is a failed check,
never an exception: fail closed.
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
HMAC_PREFIX = "hmac-sha256$"


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


def hmac_secret(plain: str, pepper: bytes) -> str:
    """The ``hmac-sha256$`` hash of a generated client secret under ``pepper``."""
    return f"{HMAC_PREFIX}{_b64(_mac(plain, pepper))}"


def _mac(plain: str, pepper: bytes) -> bytes:
    return hmac.new(pepper, plain.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def is_fast_hash(stored: str | None) -> bool:
    """Whether ``stored`` is the keyed-hash form (cheap to check), not scrypt."""
    return bool(stored) and str(stored).startswith(HMAC_PREFIX)


def verify_secret(plain: str, stored: str | None, pepper: bytes | None = None) -> bool:
    """True only if ``plain`` hashes to ``stored`` (either form); any malformed input is False."""
    if not stored or not isinstance(plain, str):
        return False
    if stored.startswith(HMAC_PREFIX):
        if pepper is None:
            return False
        try:
            expected = _unb64(stored[len(HMAC_PREFIX) :])
        except (ValueError, TypeError):
            return False
        return len(expected) == hashlib.sha256().digest_size and hmac.compare_digest(_mac(plain, pepper), expected)
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
