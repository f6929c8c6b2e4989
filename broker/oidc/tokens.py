"""Our access tokens (RFC 9068 JWTs) and ID tokens (OIDC Core 2): minted by the key ring, checked by core/jose.

Access tokens carry ``iss, sub, aud, client_id, iat, exp, jti, scope`` and ``grant`` (the id
of the grant they came from: its refresh-token family, so revoking the grant revokes them),
with header ``typ: at+jwt``. They never carry a GA4GH claim (AAI 1.2; SPEC-DIGEST B6). ID
tokens (``typ: JWT``) carry ``auth_time``, ``nonce`` when the request had one, and ``at_hash``.
authlib's ``JWTBearerTokenGenerator`` shapes the token response (:class:`AccessTokenGenerator`);
the signature is always our key ring's.

Every token of ours that comes back (access tokens at every endpoint and the gateway, ID
token hints) is checked by :meth:`AccessTokens.verify_signed`: the one JWS path
(:func:`broker.core.jose.parse` and :func:`~broker.core.jose.verify_signature`, the same
refused header members as everywhere), ``typ`` exactly the class's, a ``kid`` of our
published JWKS with its own algorithm, our issuer, integer ``exp``/``iat`` within the leeway.
:meth:`AccessTokens.verify` adds the live checks: ``jti`` not revoked, grant not revoked and
not authorized before the researcher withdrew consent for the client.

The signature check dominates the cost of a data request, so the outcome of a *successful*
signature-and-claims check is kept in a :class:`~broker.core.cache.VerifiedCache` until the
token's ``exp``. The revocation checks are never cached: they read the store on every call,
so a revocation takes effect at the next request. See :meth:`AccessTokens.verify` for why a
cached result is as safe as a cold check.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator  # type: ignore[import-untyped]
from authlib.oidc.core.util import create_half_hash  # type: ignore[import-untyped]

from broker.core.cache import VerifiedCache
from broker.core.jose import JoseError, key_by_kid, parse, require_typ, verify_signature
from broker.core.models import ACCESS_TOKEN_TYP
from broker.errors import BrokerError
from broker.oidc.repository import OidcRepository
from broker.oidc.settings import OidcSettings

MAX_TOKEN_BYTES = 16_384
ID_TOKEN_TYP = "JWT"
#: Most access tokens whose signature check is remembered (least recently used dropped first).
ACCESS_TOKEN_CACHE_ENTRIES = 50_000


class TokenKeys(Protocol):
    """What we need of :class:`broker.keys.ring.KeyRing`: sign, the keys we publish, their longest token."""

    @property
    def max_token_lifetime_seconds(self) -> int: ...

    def sign(
        self, payload: dict[str, Any], typ: str, headers: dict[str, Any] | None = None, now: int | None = None
    ) -> str: ...

    def public_keys(self, now: int | None = None, *, kid: str | None = None) -> dict[str, tuple[str, Any]]: ...


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


@dataclass(frozen=True, slots=True)
class _CheckedSignature:
    """What a cold check of an access token concluded, and under which key object."""

    claims: dict[str, Any]
    kid: str
    alg: str
    key: Any


def new_id() -> str:
    """A random identifier (jti, grant id) with 128 bits of entropy."""
    return secrets.token_urlsafe(16)


class AccessTokens:
    """Mints and checks our access tokens and ID tokens (see the module docstring)."""

    def __init__(
        self,
        *,
        issuer: str,
        settings: OidcSettings,
        keys: TokenKeys,
        repository: OidcRepository,
        leeway: int,
        max_json_depth: int,
        cache: VerifiedCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.settings = settings
        self.keys = keys
        self.repository = repository
        self.leeway = leeway
        self.max_json_depth = max_json_depth
        self.cache = cache if cache is not None else VerifiedCache(ACCESS_TOKEN_CACHE_ENTRIES)
        self.clock = clock
        self._cache_scope = f"{ACCESS_TOKEN_TYP}\x00{issuer}"

    def now(self) -> int:
        return int(self.clock())

    # ------------------------------------------------------------------ minting

    def mint(
        self, *, sub: str, client_id: str, scope: tuple[str, ...], grant: str, now: int, idp: str | None = None
    ) -> tuple[str, AccessToken]:
        """Sign a new access token; returns the JWT and its claims."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": client_id,
            "client_id": client_id,
            "iat": now,
            "exp": now + self.settings.access_token_lifetime_seconds,
            "jti": new_id(),
            "scope": " ".join(scope),
            "grant": grant,
        }
        if idp:
            claims["idp"] = idp
        token = self.keys.sign(claims, ACCESS_TOKEN_TYP, now=now)
        return token, AccessToken(claims["jti"], sub, client_id, scope, now, claims["exp"], grant, claims)

    def mint_id_token(
        self,
        *,
        sub: str,
        client_id: str,
        auth_time: int,
        now: int,
        nonce: str | None = None,
        access_token: str | None = None,
    ) -> str:
        """Sign an ID token for ``client_id``; ``at_hash`` by authlib's ``create_half_hash``."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": client_id,
            "iat": now,
            "exp": now + self.settings.id_token_lifetime_seconds,
            "auth_time": auth_time,
            "jti": new_id(),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            alg = parse(access_token, max_bytes=MAX_TOKEN_BYTES, max_depth=self.max_json_depth).alg
            claims["at_hash"] = create_half_hash(access_token, alg).decode("ascii")
        return self.keys.sign(claims, ID_TOKEN_TYP, now=now)

    # ------------------------------------------------------------------ checking

    def verify_signed(
        self, token: object, typ: str, *, verify_exp: bool = True, now: int | None = None
    ) -> dict[str, Any]:
        """Check a JWT we signed ourselves (header, signature, iss, exp, iat); return its claims."""
        try:
            jws = parse(token, max_bytes=MAX_TOKEN_BYTES, max_depth=self.max_json_depth)
            require_typ(jws, frozenset({typ}))
            # naming the kid lets the ring reload at once for a key made by another process
            key = key_by_kid(jws, self.keys.public_keys(kid=jws.kid), "our published keys")
            verify_signature(jws, key)
        except JoseError as exc:
            raise InvalidToken(str(exc.reason), exc.detail) from None
        claims = jws.payload
        if claims.get("iss") != self.issuer:
            raise InvalidToken("untrusted_issuer", "not our issuer")
        sub, exp, iat = claims.get("sub"), claims.get("exp"), claims.get("iat")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("missing_claim", "sub")
        if not isinstance(exp, int) or not isinstance(iat, int) or isinstance(exp, bool) or isinstance(iat, bool):
            raise InvalidToken("bad_claim", "exp and iat must be integers")
        at = self.now() if now is None else now
        if verify_exp and exp <= at - self.leeway:
            raise InvalidToken("expired", "token expired")
        if iat > at + self.leeway:
            raise InvalidToken("issued_in_future", "iat is in the future")
        return claims

    def id_token_hint(self, token: str) -> dict[str, Any]:
        """The claims of an ID token we issued (expired ones too: a hint names a past login)."""
        claims = self.verify_signed(token, ID_TOKEN_TYP, verify_exp=False)
        if not isinstance(claims.get("aud"), str):
            raise InvalidToken("bad_claim", "aud")
        return claims

    def verify(self, token: object, now: int | None = None) -> AccessToken:
        """Our live access token's claims, or :class:`InvalidToken`.

        The signature-and-claims check is done cold once per token and remembered; the
        store's revocation checks run on every call. A cached result is only reused when all
        of these hold, so it concludes what a cold check would:

        - the exact token bytes (SHA-256 key) under the scope ``at+jwt`` + our issuer;
        - the entry's time is not up (it ends at the token's ``exp``), and ``iat`` is still not
          in the future at ``now`` under the current leeway;
        - the token's ``kid`` is still published by the key ring with the *same* key object the
          signature was checked with (a removed or reloaded key is a miss, checked cold).

        Failures are never cached.
        """
        at = self.now() if now is None else now
        checked = self._cached(token, at) if isinstance(token, str) else None
        if checked is None:
            claims = self.verify_signed(token, ACCESS_TOKEN_TYP, now=at)
            for name in ("jti", "client_id", "scope", "grant"):
                if not isinstance(claims.get(name), str) or not claims[name]:
                    raise InvalidToken("missing_claim", name)
        else:
            claims = dict(checked.claims)  # flat scalars: a shallow copy keeps the entry intact
        repo = self.repository
        if repo.jti_revoked(claims["jti"]) or repo.family_revoked(claims["grant"]):
            raise InvalidToken("revoked", "token revoked")
        if self._consent_withdrawn(claims):
            raise InvalidToken("revoked", "consent withdrawn")
        if checked is None and isinstance(token, str):
            self._remember(token, claims, at)
        scope = tuple(claims["scope"].split())
        return AccessToken(
            claims["jti"],
            claims["sub"],
            claims["client_id"],
            scope,
            claims["iat"],
            claims["exp"],
            claims["grant"],
            claims,
        )

    def _cached(self, token: str, now: int) -> _CheckedSignature | None:
        checked = self.cache.get_token(token, self._cache_scope, now)
        if not isinstance(checked, _CheckedSignature):
            return None
        published = self.keys.public_keys().get(checked.kid)
        if published is None or published[0] != checked.alg or published[1] is not checked.key:
            return None
        if checked.claims["iat"] > now + self.leeway:
            return None
        return checked

    def _remember(self, token: str, claims: dict[str, Any], now: int) -> None:
        jws = parse(token, max_bytes=MAX_TOKEN_BYTES, max_depth=self.max_json_depth)  # checked just before
        assert jws.kid is not None
        published = self.keys.public_keys().get(jws.kid)
        if published is None or published[0] != jws.alg:
            return  # the key went away between the check and now: do not remember
        value = _CheckedSignature(claims=dict(claims), kid=jws.kid, alg=jws.alg, key=published[1])
        self.cache.put_token(token, self._cache_scope, value, expires=claims["exp"], now=now)

    def passport_revoked(self, jti: str) -> bool:
        """True if ``jti`` names a passport we minted by token exchange whose access token, grant or
        consent was revoked since (issue 11 item 4); False for any other jti (a passport of another
        broker, or one we did not record).
        """
        if not isinstance(jti, str) or not jti:
            return False
        issued = self.repository.passports.get(jti)
        if issued is None:
            return False
        repo = self.repository
        if repo.jti_revoked(issued.access_jti) or repo.family_revoked(issued.grant_id):
            return True
        return self._consent_withdrawn(
            {"sub": issued.identity_id, "client_id": issued.client_id, "grant": issued.grant_id}
        )

    def _consent_withdrawn(self, claims: dict[str, Any]) -> bool:
        """True if the researcher withdrew consent for the client after authorizing this token's grant.

        A token whose grant has no matching record while a withdrawal is on file is refused
        (fail closed).
        """
        at_ms = self.repository.withdrawn_at_ms(claims["sub"], claims["client_id"])
        if at_ms is None:
            return False
        grant = self.repository.grant(claims["grant"])
        if grant is None or grant.identity_id != claims["sub"] or grant.client_id != claims["client_id"]:
            return True
        return grant.authorized_ms <= at_ms


def _refresh_token(user: Any = None, **_: Any) -> str:
    """A new refresh token: 256 random bits, or the successor a refresh was told to hand out (retry grace)."""
    successor = getattr(user, "successor", None)
    return successor if isinstance(successor, str) and successor else secrets.token_urlsafe(32)


class AccessTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]  # authlib has no type information
    """authlib's RFC 9068 generator with our claims, our clock and our key ring's signature.

    ``user`` is the :class:`broker.oidc.grants.Authorized` of the grant: its ``grant`` names
    the family the token belongs to. The refresh token (when the grant asks for one) is 256
    random bits, or on a refresh the successor derived from the presented token (the same on
    every retry); only its hash is ever stored.
    """

    def __init__(self, tokens: AccessTokens) -> None:
        super().__init__(
            issuer=tokens.issuer,
            refresh_token_generator=_refresh_token,
            expires_generator=lambda client, grant_type: tokens.settings.access_token_lifetime_seconds,
        )
        self.tokens = tokens

    def access_token_generator(self, client: Any, grant_type: str, user: Any, scope: str) -> str:
        token, _ = self.tokens.mint(
            sub=user.identity_id,
            client_id=client.get_client_id(),
            scope=tuple(scope.split()),
            grant=user.grant.grant_id,
            now=user.now,
            idp=user.idp,
        )
        return token


# --------------------------------------------------------------------------- old entry points
# For callers that are not built by the container yet (the gateway's wiring in app.py, the
# DAC API, other areas' tests): the same checks, on a store that has a kernel. They share
# one signature cache per process with the OP that create_app builds.

#: The signature cache of :func:`verify_access_token` (create_app hands it to the OP too).
ACCESS_TOKEN_CACHE = VerifiedCache(ACCESS_TOKEN_CACHE_ENTRIES)


def tokens_for(keyring: TokenKeys, settings: Any, store: Any) -> AccessTokens:
    """An :class:`AccessTokens` for the root ``settings`` and a store with a kernel."""
    leeway = settings.limits.clock_leeway_seconds
    marker = max(3600, settings.oidc.access_token_lifetime_seconds + leeway)
    return AccessTokens(
        issuer=settings.issuer,
        settings=settings.oidc,
        keys=keyring,
        repository=OidcRepository(store.kernel, family_marker_seconds=marker),
        leeway=leeway,
        max_json_depth=settings.limits.max_json_depth,
        cache=ACCESS_TOKEN_CACHE,
    )


def verify_access_token(
    keyring: TokenKeys, settings: Any, store: Any, token: str, now: int | None = None
) -> AccessToken:
    """:meth:`AccessTokens.verify` for callers not built by the container yet."""
    return tokens_for(keyring, settings, store).verify(token, now=now)


def mint_access_token(
    keyring: TokenKeys,
    settings: Any,
    *,
    sub: str,
    client_id: str,
    scope: tuple[str, ...],
    grant: str,
    now: int,
    idp: str | None = None,
) -> tuple[str, AccessToken]:
    """:meth:`AccessTokens.mint` for callers not built by the container yet (tests of other areas)."""
    tokens = AccessTokens(
        issuer=settings.issuer,
        settings=settings.oidc,
        keys=keyring,
        repository=None,  # type: ignore[arg-type]  # minting reads no record
        leeway=settings.limits.clock_leeway_seconds,
        max_json_depth=settings.limits.max_json_depth,
    )
    return tokens.mint(sub=sub, client_id=client_id, scope=scope, grant=grant, now=now, idp=idp)
