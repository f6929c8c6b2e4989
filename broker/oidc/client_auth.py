"""Client authentication at the token, introspection, revocation and device endpoints.

Methods (RFC 6749 2.3.1, OIDC Core 9): ``client_secret_basic``, ``client_secret_post``,
``private_key_jwt`` (RFC 7523) and ``none`` for public clients (client_id only). Each is a
function registered into authlib's client-authentication registry
(``AuthorizationServer.register_client_auth_method``); :meth:`ClientAuthenticator.authenticate`
is what the server calls. It keeps our rules, which authlib's loop over methods does not:

- the request uses exactly one method, found from what it carries; two at once is
  ``invalid_request`` (RFC 6749 2.3); a client must use the method it was registered with;
- every failure is ``401 invalid_client``, with ``WWW-Authenticate: Basic`` when HTTP Basic
  was tried (THREAT-MODEL EPM g);
- failures are counted per (claimed client_id, address), and per address whatever the
  client_id (a fresh client_id per request must not escape the count, issue 11 item 2): past
  either limit every attempt is ``429`` with ``Retry-After`` until the window ends, right or
  wrong (OA-18).

Security-critical parsing is written here, not borrowed: the Basic header is decoded strictly
(base64, one ``:``, then form-urlencoding per RFC 6749 2.3.1; authlib's decoder is lenient);
secrets are checked against their stored hash with a constant-time compare: HMAC-SHA-256
under the server pepper for the secrets we generate, scrypt for older hashes (a verified pair
is remembered a minute, keyed by a hash, so scrypt runs once per client per minute); an
unknown client costs one HMAC, as a known one does. Client assertions go
through the one JWS path (:mod:`broker.core.jose`): ES256 or RS256 only (never ``none``,
HMAC or PS256), no embedded keys or ``crit``, ``typ`` absent, ``JWT`` or
``client-authentication+jwt``, a key of the client's registered JWKS that fits (the same
key rules as every key we accept, :mod:`broker.trust.keyset`), ``iss == sub == client_id``,
an audience of exactly our issuer or the endpoint, ``exp`` at most 5 minutes ahead, and a
``jti`` used once (a kernel ``add``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from broker.core.jose import JoseError, parse, require_typ, verify_signature
from broker.core.models import KeyResolutionError
from broker.oidc.clients import ClientRegistry, OAuthClient
from broker.oidc.errors import OAuthError
from broker.oidc.passwords import hmac_secret, verify_secret
from broker.oidc.rate_limit import CLIENT_AUTH_FAILURES, CLIENT_AUTH_FAILURES_PER_ADDRESS
from broker.oidc.records import AssertionUse, Client
from broker.oidc.repository import OidcRepository
from broker.trust.keyset import parse_jwks
from broker.web.rate_limit import RateLimited, RateLimiter, limit_key

JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300  # seconds between now and a client assertion's exp
MAX_ASSERTION_BYTES = 8192
MAX_CLIENT_KEYS = 20
ASSERTION_TYPS: frozenset[str | None] = frozenset({None, "jwt", "client-authentication+jwt"})
METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
_DUMMY_SECRET = "not a client secret"


@dataclass(frozen=True)
class AuthenticatedClient:
    """A client that proved who it is (or a public client that named itself)."""

    client: Client
    method: str


class _SecretCache:
    """Recently verified (client, secret) pairs, so an old scrypt hash costs once per client per minute.

    Keys are SHA-256 over the stored hash and the presented secret: a changed secret hash
    (rotation, removal) never matches an old entry, and nothing in memory is the secret.
    """

    def __init__(self, entries: int = 1024, ttl: int = 60) -> None:
        self._entries = entries
        self._ttl = ttl
        self._data: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, client: Client, presented: str, pepper: bytes | None) -> bool:
        key = hashlib.sha256(f"{client.client_id}\x00{client.secret_hash}\x00{presented}".encode()).digest()
        with self._lock:
            until = self._data.get(key)
            if until is not None and until > time.monotonic():
                return True
        if not verify_secret(presented, client.secret_hash, pepper):
            return False
        with self._lock:
            self._data[key] = time.monotonic() + self._ttl
            self._data.move_to_end(key)
            while len(self._data) > self._entries:
                self._data.popitem(last=False)
        return True


#: Verified (client, secret) pairs of this process, shared by every authenticator.
SECRET_CACHE = _SecretCache()


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(client_id, secret)`` from an ``Authorization: Basic`` value, or None if it is not Basic.

    Raises :class:`OAuthError` (invalid_client) for a Basic header that does not decode.
    """
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_client", "Malformed HTTP Basic credentials.", 401, basic_challenge=True) from None
    if ":" not in decoded:
        raise OAuthError("invalid_client", "Malformed HTTP Basic credentials.", 401, basic_challenge=True)
    raw_id, _, raw_secret = decoded.partition(":")
    return unquote_plus(raw_id), unquote_plus(raw_secret)


def client_keys(client: Client) -> dict[str, tuple[str, object]]:
    """The client's registered keys that may sign an assertion: kid -> (alg, public key).

    The JWKS is parsed by the trust rules (:func:`broker.trust.keyset.parse_jwks`: public EC
    P-256 or RSA >= 2048 bits, no private members, ``use`` sig); each key is offered for the
    one algorithm it fits. A key without ``kid`` is listed under "" (an assertion without
    ``kid`` may use a key only when the client has exactly one).
    """
    try:
        keyset = parse_jwks(client.jwks or {}, MAX_CLIENT_KEYS)
    except ValueError:
        return {}
    out: dict[str, tuple[str, object]] = {}
    for kid in {k.kid for k in keyset.keys}:
        for alg in ("ES256", "RS256"):
            try:
                found = keyset.select(kid or None, alg, f"client {client.client_id}")
            except KeyResolutionError:
                continue
            out[found.kid] = (alg, found.key)
    return out


class ClientAuthenticator:
    """Our client authentication (see the module docstring), for authlib and the DAC area.

    ``limiter`` None disables the failure limit (callers that keep their own).
    """

    def __init__(
        self,
        clients: ClientRegistry,
        repository: OidcRepository,
        *,
        issuer: str,
        leeway: int,
        max_json_depth: int,
        limiter: RateLimiter | None,
        pepper: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clients = clients
        self.pepper = pepper
        self.repository = repository
        self.issuer = issuer
        self.leeway = leeway
        self.max_json_depth = max_json_depth
        self.limiter = limiter
        self.clock = clock
        self.secrets = SECRET_CACHE

    # ------------------------------------------------------------------ the entry point

    def authenticate(
        self,
        form: dict[str, str],
        authorization: str | None,
        endpoint_url: str,
        *,
        methods: Sequence[str] = METHODS,
        address: str = "",
        run: Callable[[str], Client] | None = None,
    ) -> AuthenticatedClient:
        """Authenticate the client of one request within the failure limit, or raise :class:`OAuthError`.

        ``methods`` are those the endpoint accepts; ``run(method)`` (authlib's registry) runs
        the chosen method, else it is called directly.
        """
        limits = (
            (CLIENT_AUTH_FAILURES, limit_key(self.claimed_client_id(form, authorization), address)),
            (CLIENT_AUTH_FAILURES_PER_ADDRESS, limit_key(address)),
        )
        if self.limiter is not None:
            try:
                self.limiter.check_all(limits)
            except RateLimited as exc:
                raise OAuthError.too_many(exc.retry_after) from None
        try:
            method = self.method_of(form, authorization)
            if method not in methods:
                raise OAuthError("invalid_client", "This endpoint requires client authentication.", 401)
            client = run(method) if run is not None else self.run(method, form, authorization, endpoint_url)
        except OAuthError as exc:
            if exc.code == "invalid_client" and self.limiter is not None:
                self.limiter.hit_all(limits)
            raise
        return AuthenticatedClient(client, method)

    def method_of(self, form: dict[str, str], authorization: str | None) -> str:
        """Which one method the request uses; ``invalid_request`` for two, ``invalid_client`` for a bad header."""
        basic = parse_basic(authorization) if authorization else None
        if authorization and basic is None:
            raise OAuthError("invalid_client", "Only HTTP Basic client authentication is accepted in the header.", 401)
        post = "client_secret" in form
        assertion = "client_assertion" in form or "client_assertion_type" in form
        if sum((basic is not None, post, assertion)) > 1:
            raise OAuthError(
                "invalid_request", "Use exactly one client authentication method.", basic_challenge=basic is not None
            )
        if basic is not None:
            if "client_id" in form and form["client_id"] != basic[0]:
                raise OAuthError(
                    "invalid_request", "client_id in the body differs from the HTTP Basic user.", basic_challenge=True
                )
            return "client_secret_basic"
        return "client_secret_post" if post else "private_key_jwt" if assertion else "none"

    def run(self, method: str, form: dict[str, str], authorization: str | None, endpoint_url: str) -> Client:
        """Authenticate with ``method`` (already chosen by :meth:`method_of`)."""
        if method == "client_secret_basic":
            basic = parse_basic(authorization or "")
            assert basic is not None
            return self._secret_client(basic[0], basic[1], method, basic=True)
        if method == "client_secret_post":
            return self._secret_client(form.get("client_id", ""), form["client_secret"], method, basic=False)
        if method == "private_key_jwt":
            return self._assertion_client(form, endpoint_url)
        client = self.clients.get(form.get("client_id"))
        if client is None or not client.public:
            raise OAuthError("invalid_client", "Client authentication failed.", 401)
        return client

    @staticmethod
    def claimed_client_id(form: dict[str, str], authorization: str | None) -> str:
        """Which client a request says it is, before any check (to key rate limits; never trusted).

        The HTTP Basic user, else the ``client_id`` parameter, else the unverified ``iss`` of a
        client assertion; an empty string when none can be read. Never raises.
        """
        if authorization:
            try:
                basic = parse_basic(authorization)
            except OAuthError:
                basic = None
            if basic is not None:
                return basic[0]
        if form.get("client_id"):
            return form["client_id"]
        try:
            iss = parse(form.get("client_assertion", ""), max_bytes=MAX_ASSERTION_BYTES, max_depth=8).payload.get("iss")
        except JoseError:
            return ""
        return iss if isinstance(iss, str) else ""

    # ------------------------------------------------------------------ the methods

    def _secret_client(self, client_id: str, secret: str, method: str, *, basic: bool) -> Client:
        client = self.clients.get(client_id)
        if client is None or client.auth_method != method or not client.secret_hash:
            # One HMAC, as for a client with a generated secret, so timing does not tell which exist.
            verify_secret(secret, hmac_secret(_DUMMY_SECRET, self.pepper or b"\x00" * 32), self.pepper)
            raise OAuthError("invalid_client", "Client authentication failed.", 401, basic_challenge=basic)
        if not self.secrets.check(client, secret, self.pepper):
            raise OAuthError("invalid_client", "Client authentication failed.", 401, basic_challenge=basic)
        return client

    def _assertion_client(self, form: dict[str, str], endpoint_url: str) -> Client:
        fail = OAuthError("invalid_client", "Client assertion rejected.", 401)
        if form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            raise OAuthError("invalid_client", "client_assertion_type must be the RFC 7523 JWT bearer type.", 401)
        try:
            jws = parse(form.get("client_assertion", ""), max_bytes=MAX_ASSERTION_BYTES, max_depth=self.max_json_depth)
            require_typ(jws, ASSERTION_TYPS, ignore_case=True)
        except JoseError:
            raise fail from None
        claims = jws.payload
        client_id = claims.get("iss")
        if not isinstance(client_id, str) or claims.get("sub") != client_id:
            raise fail
        if "client_id" in form and form["client_id"] != client_id:
            raise fail
        client = self.clients.get(client_id)
        if client is None or client.auth_method != "private_key_jwt" or not client.jwks:
            raise fail
        keys = client_keys(client)
        only = next(iter(keys.values())) if len(keys) == 1 else None
        found = keys.get(jws.kid) if jws.kid is not None else only
        if found is None or found[0] != jws.alg:
            raise fail
        try:
            verify_signature(jws, found[1])
        except JoseError:
            raise fail from None
        now = int(self.clock())
        self._check_claims(claims, endpoint_url, now, fail)
        jti = claims["jti"]
        expires = max(now + 1, int(claims["exp"]) + self.leeway)
        if not self.repository.first_use(AssertionUse(client_id=client.client_id, jti=jti, expires_at=expires)):
            raise OAuthError("invalid_client", "Client assertion replayed.", 401)
        return client

    def _check_claims(self, claims: dict[str, Any], endpoint_url: str, now: int, fail: OAuthError) -> None:
        aud = claims.get("aud")
        if isinstance(aud, list):
            if len(aud) != 1:
                raise fail
            aud = aud[0]
        if not isinstance(aud, str) or aud not in {self.issuer, self.issuer.rstrip("/"), endpoint_url}:
            raise fail
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool) or exp <= now - self.leeway:
            raise fail
        if exp - now > MAX_ASSERTION_LIFETIME:
            raise fail
        for name in ("iat", "nbf"):
            value = claims.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise fail
        if isinstance(claims.get("nbf"), int) and claims["nbf"] > now + self.leeway:
            raise fail
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            raise fail


def registry_functions(authenticator: ClientAuthenticator) -> dict[str, Callable[[Any, Any], OAuthClient]]:
    """authlib client-auth functions ``(query_client, request) -> client`` for each of our methods.

    authlib's registry dispatches to these; the request is our :class:`broker.oidc.server.OAuthRequest`.
    """

    def method(name: str) -> Callable[[Any, Any], OAuthClient]:
        def run(query_client: Any, request: Any) -> OAuthClient:
            client = authenticator.run(name, request.params, request.authorization, request.endpoint_url)
            return OAuthClient(client)

        return run

    return {name: method(name) for name in METHODS}
