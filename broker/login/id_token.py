"""Verifying an upstream's ID token (OIDC Core 3.1.3.7; THREAT-MODEL RP-03, EPM h).

Written with the project's strict JWS parser (:mod:`broker.core.jose`) rather than a
general JWT library, for the same reasons the clearinghouse uses it: only RS256/ES256,
no ``none``/``HS*``, no ``crit``, no keys embedded in the header, no duplicate JSON
members, bounded size and depth. Keys come only from the upstream's discovered
``jwks_uri`` through :class:`broker.trust.jwks.KeyResolver` (cached; an unknown ``kid``
triggers at most one refetch per cooldown, THREAT-MODEL RP-06/JWT-18; no ``kid`` is
accepted only when exactly one key fits).

The checks, in order; the first that fails raises :class:`IdTokenError`:

1. a compact JWS within the size limit, ``typ`` absent or ``JWT`` (an access token,
   passport or visa presented as an ID token is refused);
2. ``iss`` exactly the upstream's issuer, before any key is looked up;
3. the signature, with the key the resolver picks for (``kid``, ``alg``);
4. ``sub`` a non-empty string of at most 255 characters (OIDC Core 2);
5. ``aud`` our client id, or a list holding it; with more than one audience ``azp`` is
   required; ``azp``, when present, must be our client id;
6. ``exp`` an integer not passed, ``iat`` an integer not in the future, ``nbf`` (if any)
   not in the future, each with the clock leeway; ``exp`` after ``iat``;
7. ``nonce`` equal (constant-time) to the one we sent.
"""

from __future__ import annotations

import hmac
from typing import Any, Protocol

from broker.core.jose import JoseError, parse, verify_signature
from broker.core.models import KeyResolutionError
from broker.errors import BrokerError

MAX_SUB_CHARS = 255
ID_TOKEN_TYPS = frozenset({"jwt", "application/jwt"})


class IdTokenError(BrokerError):
    """The ID token is refused; ``reason`` is machine-readable and the message never quotes the token."""

    status = 401
    code = "invalid_id_token"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BrokerKeys(Protocol):
    """What we need of :class:`broker.trust.jwks.KeyResolver`: the key of an issuer's token."""

    def broker_key(self, iss: str, kid: str | None, alg: str) -> Any: ...


def verify_id_token(
    token: object,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    keys: BrokerKeys,
    now: int,
    leeway: int,
    max_bytes: int,
    max_depth: int,
) -> dict[str, Any]:
    """The ID token's claims after every check of the module docstring."""
    try:
        jws = parse(token, max_bytes=max_bytes, max_depth=max_depth)
    except JoseError as exc:
        raise IdTokenError(f"jws_{exc.reason}", exc.detail) from None
    if jws.typ is not None and jws.typ.lower() not in ID_TOKEN_TYPS:
        raise IdTokenError("bad_typ", "the token's typ is not that of an ID token")
    claims = jws.payload
    if claims.get("iss") != issuer:
        raise IdTokenError("wrong_iss", "iss is not the upstream's issuer")
    try:
        key = keys.broker_key(issuer, jws.kid, jws.alg)
    except KeyResolutionError as exc:
        raise IdTokenError(f"key_{exc.reason}", exc.detail) from None
    try:
        verify_signature(jws, key.key)
    except JoseError as exc:
        raise IdTokenError(f"jws_{exc.reason}", exc.detail) from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_CHARS:
        raise IdTokenError("bad_sub", f"sub must be a string of 1 to {MAX_SUB_CHARS} characters")
    _check_audience(claims, client_id)
    _check_times(claims, now, leeway)
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not hmac.compare_digest(presented.encode(), nonce.encode()):
        raise IdTokenError("bad_nonce", "nonce is missing or not the one we sent")
    return claims


def _check_audience(claims: dict[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    if isinstance(aud, str):
        audiences = [aud]
    elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        audiences = aud
    else:
        raise IdTokenError("bad_aud", "aud is missing or not a string or list of strings")
    if client_id not in audiences:
        raise IdTokenError("bad_aud", "aud does not name our client id")
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:
        raise IdTokenError("bad_azp", "several audiences and no azp")
    if azp is not None and azp != client_id:
        raise IdTokenError("bad_azp", "azp is not our client id")


def _int_claim(claims: dict[str, Any], name: str, required: bool) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise IdTokenError("bad_time", f"{name} is missing or not an integer")
    return value


def _check_times(claims: dict[str, Any], now: int, leeway: int) -> None:
    exp = _int_claim(claims, "exp", True)
    iat = _int_claim(claims, "iat", True)
    nbf = _int_claim(claims, "nbf", False)
    assert exp is not None and iat is not None
    if exp <= now - leeway:
        raise IdTokenError("expired", "the ID token has expired")
    if iat > now + leeway:
        raise IdTokenError("bad_time", "iat is in the future")
    if nbf is not None and nbf > now + leeway:
        raise IdTokenError("bad_time", "the ID token is not valid yet (nbf)")
    if exp <= iat:
        raise IdTokenError("bad_time", "exp is not after iat")
