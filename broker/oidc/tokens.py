"""Our access tokens (RFC 9068 JWTs) and ID tokens (OIDC Core 2), minted and checked here.

Access tokens carry ``iss, sub, aud, client_id, iat, exp, jti, scope`` and ``grant`` (the
id of the grant they came from: its refresh-token family, so revoking the grant revokes
them), with header ``typ: at+jwt``. They never carry a GA4GH claim (AAI 1.2; SPEC-DIGEST
B6). ID tokens carry ``auth_time``, ``nonce`` when the request had one, and ``at_hash``.

:func:`verify_access_token` accepts exactly our own live access tokens: header ``typ``
exactly ``at+jwt``, an allowed algorithm, a ``kid`` of our published JWKS and no
embedded-key header; our issuer; an unexpired ``exp``; a ``jti`` not revoked; a grant
not revoked and not authorized before the researcher withdrew consent for the client
(``consent_withdrawal``). Anything else raises :class:`InvalidToken` with a machine-readable
reason.

The signature check dominates the cost of a data request, so the outcome of a *successful*
signature-and-claims check is kept in a process-wide :class:`~broker.core.cache.VerifiedCache`
(:data:`ACCESS_TOKEN_CACHE`) until the token's ``exp``. The revocation checks (jti, grant
family, consent withdrawal) are never cached: they run against the store on every call, so a
revocation takes effect at the next request. See :func:`verify_access_token` for why a cached
result is as safe as a cold check.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from broker.core.cache import VerifiedCache
from broker.core.models import ACCESS_TOKEN_TYP, ALLOWED_ALGORITHMS
from broker.errors import BrokerError
from broker.oidc.consent_withdrawal import withdrawn_at_ms
from broker.oidc.grant_records import get_grant_record
from broker.store.base import Store

if TYPE_CHECKING:
    from broker.settings import Settings

MAX_TOKEN_BYTES = 16_384
FORBIDDEN_HEADERS = ("jku", "jwk", "x5u", "x5c", "crit")
#: Most access tokens whose signature check is remembered (least recently used dropped first).
ACCESS_TOKEN_CACHE_ENTRIES = 50_000
#: Signature-and-claims results of our own access tokens; see :func:`verify_access_token`.
ACCESS_TOKEN_CACHE = VerifiedCache(ACCESS_TOKEN_CACHE_ENTRIES)


@dataclass(frozen=True, slots=True)
class _CheckedSignature:
    """What a cold :func:`verify_signed` of an access token concluded, and under which key."""

    claims: dict[str, Any]
    kid: str
    alg: str
    key: Any  # the exact public key object the signature was checked with


class InvalidToken(BrokerError):
    """A token we do not accept; ``reason`` is machine-readable (never shown with the token)."""

    status = 401
    code = "invalid_token"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class AccessToken:
    """The checked claims of one of our access tokens."""

    jti: str
    sub: str
    client_id: str
    scope: tuple[str, ...]
    iat: int
    exp: int
    grant: str
    claims: dict[str, Any]


def new_id() -> str:
    """A random identifier (jti, grant id) with 128 bits of entropy."""
    return secrets.token_urlsafe(16)


def mint_access_token(
    keyring: Any,
    settings: Settings,
    *,
    sub: str,
    client_id: str,
    scope: tuple[str, ...],
    grant: str,
    now: int,
    idp: str | None = None,
) -> tuple[str, AccessToken]:
    """Sign a new access token; returns the JWT and its claims."""
    lifetime = settings.oidc.access_token_lifetime_seconds
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "sub": sub,
        "aud": client_id,
        "client_id": client_id,
        "iat": now,
        "exp": now + lifetime,
        "jti": new_id(),
        "scope": " ".join(scope),
        "grant": grant,
    }
    if idp:
        claims["idp"] = idp
    token = keyring.sign(claims, ACCESS_TOKEN_TYP, now=now)
    return token, AccessToken(
        jti=claims["jti"],
        sub=sub,
        client_id=client_id,
        scope=scope,
        iat=now,
        exp=claims["exp"],
        grant=grant,
        claims=claims,
    )


def half_hash(value: str, alg: str) -> str:
    """``at_hash``: base64url of the left half of the hash of the token (OIDC Core 3.1.3.6)."""
    digest = {"RS256": hashlib.sha256, "ES256": hashlib.sha256, "PS256": hashlib.sha256}[alg](
        value.encode("ascii")
    ).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def mint_id_token(
    keyring: Any,
    settings: Settings,
    *,
    sub: str,
    client_id: str,
    auth_time: int,
    now: int,
    nonce: str | None = None,
    access_token: str | None = None,
    sid: str | None = None,
) -> str:
    """Sign an ID token for ``client_id`` (typ ``JWT``)."""
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "sub": sub,
        "aud": client_id,
        "iat": now,
        "exp": now + settings.oidc.id_token_lifetime_seconds,
        "auth_time": auth_time,
        "jti": new_id(),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if sid is not None:
        claims["sid"] = sid
    if access_token is not None:
        alg = _header(access_token).get("alg", "ES256")
        claims["at_hash"] = half_hash(access_token, alg)
    return keyring.sign(claims, "JWT", now=now)


def _header(token: str) -> dict[str, Any]:
    segment = token.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _our_key(keyring: Any, kid: Any, alg: str) -> Any:
    if not isinstance(kid, str):
        raise InvalidToken("key_not_found", "no kid")
    found = keyring.public_keys().get(kid)
    if found is None:
        raise InvalidToken("key_not_found", "kid is not one of our keys")
    key_alg, key = found
    if key_alg != alg:
        raise InvalidToken("bad_alg", "algorithm does not match the key")
    return key


def verify_signed(
    keyring: Any, settings: Settings, token: str, typ: str, *, verify_exp: bool = True, now: int | None = None
) -> dict[str, Any]:
    """Check a JWT we signed ourselves (header, signature, iss, exp, iat); return its claims."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise InvalidToken("malformed", "not a compact JWS")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed", "bad header") from None
    if header.get("typ") != typ:
        raise InvalidToken("bad_typ", "wrong token type")
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise InvalidToken("bad_alg", "algorithm not allowed")
    if any(name in header for name in FORBIDDEN_HEADERS):
        raise InvalidToken("embedded_key", "header names a key or critical extension")
    key = _our_key(keyring, header.get("kid"), alg)
    now = int(time.time()) if now is None else now
    leeway = settings.limits.clock_leeway_seconds
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            issuer=settings.issuer,
            options={
                "verify_aud": False,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["iss", "sub", "iat", "exp"],
            },
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad_signature", "signature does not verify") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("untrusted_issuer", "not our issuer") from None
    except jwt.PyJWTError as exc:
        raise InvalidToken("malformed", exc.__class__.__name__) from None
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(exp, int) or not isinstance(iat, int) or isinstance(exp, bool):
        raise InvalidToken("bad_claim", "exp and iat must be integers")
    if verify_exp and exp <= now - leeway:
        raise InvalidToken("expired", "token expired")
    if iat > now + leeway:
        raise InvalidToken("issued_in_future", "iat is in the future")
    return claims


def verify_access_token(
    keyring: Any, settings: Settings, store: Store, token: str, now: int | None = None
) -> AccessToken:
    """Our live access token's claims, or :class:`InvalidToken`.

    The signature-and-claims check is done cold once per token and remembered in
    :data:`ACCESS_TOKEN_CACHE`; the store's revocation checks run on every call. A cached
    result is only reused when all of these hold, so it concludes what a cold check would:

    - the exact token bytes (SHA-256 key) under the scope ``at+jwt`` + our issuer, so another
      issuer setting or token type is a miss;
    - the entry's time is not up (it ends at the token's ``exp``), and ``iat`` is still not
      in the future at ``now`` under the current leeway;
    - the token's ``kid`` is still published by *this* key ring with the *same* key object the
      signature was checked with. A removed key, another key ring, or a ring that reloaded its
      keys is a miss and the token is verified cold (where a removed key is refused).

    Failures are never cached. The entry holds the key object itself (not its ``id``), so the
    identity comparison cannot be fooled by a reused address.
    """
    at = int(time.time()) if now is None else now
    scope = f"{ACCESS_TOKEN_TYP}\x00{settings.issuer}"
    checked = _cached_signature(keyring, settings, token, scope, at) if isinstance(token, str) else None
    if checked is None:
        claims = verify_signed(keyring, settings, token, ACCESS_TOKEN_TYP, now=at)
        for name in ("jti", "client_id", "scope", "grant"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise InvalidToken("missing_claim", name)
    else:
        claims = dict(checked.claims)  # our own claims are flat scalars: a shallow copy keeps the entry intact
    if store.is_token_revoked(claims["jti"]) or store.family_revoked(claims["grant"]):
        raise InvalidToken("revoked", "token revoked")
    if _consent_withdrawn(store, claims):
        raise InvalidToken("revoked", "consent withdrawn")
    if checked is None:
        _remember_signature(keyring, token, scope, claims, at)
    return AccessToken(
        jti=claims["jti"],
        sub=claims["sub"],
        client_id=claims["client_id"],
        scope=tuple(claims["scope"].split()),
        iat=claims["iat"],
        exp=claims["exp"],
        grant=claims["grant"],
        claims=claims,
    )


def _cached_signature(keyring: Any, settings: Settings, token: str, scope: str, now: int) -> _CheckedSignature | None:
    """The remembered check of ``token`` if it still holds at ``now`` for this key ring, else ``None``."""
    checked = ACCESS_TOKEN_CACHE.get_token(token, scope, now)
    if not isinstance(checked, _CheckedSignature):
        return None
    published = keyring.public_keys().get(checked.kid)
    if published is None or published[0] != checked.alg or published[1] is not checked.key:
        return None
    if checked.claims["iat"] > now + settings.limits.clock_leeway_seconds:
        return None
    return checked


def _remember_signature(keyring: Any, token: str, scope: str, claims: dict[str, Any], now: int) -> None:
    """Cache a successful cold check of ``token`` until its ``exp``, tied to the key that verified it."""
    header = jwt.get_unverified_header(token)  # already checked by verify_signed
    kid, alg = header["kid"], header["alg"]
    published = keyring.public_keys().get(kid)
    if published is None or published[0] != alg:
        return  # the key went away between the check and now: do not remember
    value = _CheckedSignature(claims=dict(claims), kid=kid, alg=alg, key=published[1])
    ACCESS_TOKEN_CACHE.put_token(token, scope, value, expires=claims["exp"], now=now)


def _consent_withdrawn(store: Store, claims: dict[str, Any]) -> bool:
    """True if the researcher withdrew consent for the client after authorizing this token's grant.

    The grant's authorization time comes from its record, which outlives every access token
    of the grant; a token whose grant has no matching record while a withdrawal is on file
    is refused (fail closed).
    """
    at_ms = withdrawn_at_ms(store, claims["sub"], claims["client_id"])
    if at_ms is None:
        return False
    record = get_grant_record(store, claims["grant"])
    if record is None or record.identity_id != claims["sub"] or record.client_id != claims["client_id"]:
        return True
    return record.authorized_ms <= at_ms
