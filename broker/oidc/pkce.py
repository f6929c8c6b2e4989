"""PKCE (RFC 7636) with S256 only, as an authlib ``CodeChallenge`` extension.

authlib's extension is kept for what it does (its hooks into the code grant, its S256
transform); the checks themselves are stricter here, because THREAT-MODEL OA-05 and RFC 9700
2.1.1 ask for more than RFC 7636's defaults:

- ``plain`` is refused, and a challenge without ``code_challenge_method`` is refused rather
  than taken as ``plain``; an S256 challenge is exactly 43 base64url characters;
- at the token endpoint a missing, malformed or wrong verifier, and a verifier for a code
  whose request had no challenge (the downgrade of RFC 9700 4.8.2), are all ``invalid_grant``
  (authlib answers some of them ``invalid_request``);
- the comparison is constant-time.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge  # type: ignore[import-untyped]

from broker.oidc.errors import OAuthError

_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


def valid_verifier(verifier: str) -> bool:
    return bool(_VERIFIER.fullmatch(verifier))


def valid_challenge(challenge: str) -> bool:
    return bool(_S256_CHALLENGE.fullmatch(challenge))


def s256(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 4.2), by authlib."""
    return str(create_s256_code_challenge(verifier))


def verifier_matches(verifier: str, challenge: str) -> bool:
    """True if ``verifier`` is well-formed and its S256 transform equals ``challenge`` (constant time)."""
    if not valid_verifier(verifier):
        return False
    return hmac.compare_digest(s256(verifier).encode("ascii"), challenge.encode("ascii", "replace"))


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]  # authlib has no type information
    """authlib's PKCE extension, S256 only, with the checks of the module docstring.

    The authorization-side check is called by :mod:`broker.oidc.authorization` in its fixed
    order of checks (authlib keeps hooks in a set, so their order is not defined); this
    extension registers the token-side check only.
    """

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": verifier_matches}

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_token_request", self.validate_code_verifier)

    def check_challenge(self, params: dict[str, str], required: bool) -> None:
        """The authorization request's challenge: S256 with a 43-character value, or absent when allowed."""
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if method is not None and method != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256.")
        if challenge is not None:
            if method is None:
                raise OAuthError("invalid_request", "code_challenge_method=S256 is required with a challenge.")
            if not valid_challenge(challenge):
                raise OAuthError("invalid_request", "code_challenge is not an S256 challenge.")
        elif method is not None:
            raise OAuthError("invalid_request", "code_challenge_method without code_challenge.")
        elif required:
            raise OAuthError("invalid_request", "PKCE (code_challenge with S256) is required.")

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        """The token request's verifier against the code's challenge; ``invalid_grant`` on any mismatch."""
        verifier = grant.request.form.get("code_verifier")
        challenge = self.get_authorization_code_challenge(grant.request.authorization_code)
        if challenge:
            if verifier is None:
                raise OAuthError("invalid_grant", "code_verifier is required.")
            if not verifier_matches(verifier, challenge):
                raise OAuthError("invalid_grant", "code_verifier does not match the code challenge.")
        elif verifier is not None:
            raise OAuthError("invalid_grant", "code_verifier sent but the authorization request had no challenge.")
