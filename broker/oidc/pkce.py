"""PKCE (RFC 7636) with S256 only; ``plain`` is refused (RFC 9700 2.1.1).

Written here because it is a handful of lines and every check is security-relevant:
the verifier alphabet and length (43-128 unreserved characters, 4.1), the challenge
shape (S256 gives exactly 43 base64url characters), and a constant-time comparison.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


def valid_verifier(verifier: str) -> bool:
    return bool(_VERIFIER.fullmatch(verifier))


def valid_challenge(challenge: str) -> bool:
    return bool(_S256_CHALLENGE.fullmatch(challenge))


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(verifier: str, challenge: str) -> bool:
    """True if ``verifier`` is well-formed and its S256 transform equals ``challenge``."""
    if not valid_verifier(verifier):
        return False
    return hmac.compare_digest(s256(verifier).encode("ascii"), challenge.encode("ascii", "replace"))
