"""Client authentication at the token, introspection, revocation and device endpoints.

Methods (RFC 6749 2.3.1, OIDC Core 9): ``client_secret_basic``, ``client_secret_post``,
``private_key_jwt`` (RFC 7523), and ``none`` for public clients (client_id only). A
client must use exactly the method it was registered with; presenting two methods at
once is ``invalid_request`` (RFC 6749 2.3). Every failure is ``401 invalid_client``
with ``WWW-Authenticate: Basic`` when HTTP Basic was tried (THREAT-MODEL EPM g).

Security-critical parsing is written here, not borrowed: the Basic header is decoded
strictly (base64, one ``:``, then form-urlencoding per RFC 6749 2.3.1); secrets are
checked with scrypt and a constant-time compare; client assertions are checked for
``iss == sub == client_id``, an audience of exactly our issuer or the endpoint, a short
``exp``, a ``jti`` used once (``add_ticket``), and a signature by a key of the client's
registered JWKS with an allowed asymmetric algorithm (never ``none`` or HMAC).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

import jwt

from broker.oidc.clients import find_client
from broker.oidc.errors import OAuthError
from broker.oidc.passwords import verify_secret
from broker.store.base import Client, Store
from broker.trust.keyset import key_misfit, parse_key

if TYPE_CHECKING:
    from broker.settings import Settings

JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "ES256")  # the one JWS path takes no other (PS256 refused)
MAX_ASSERTION_LIFETIME = 300  # seconds between now and a client assertion's exp
MAX_ASSERTION_BYTES = 8192


@dataclass(frozen=True)
class AuthenticatedClient:
    """A client that proved who it is (or a public client that named itself)."""

    client: Client
    method: str


class _SecretCache:
    """Recently verified (client, secret) pairs, so scrypt runs once per client per minute.

    Keys are SHA-256 over the stored hash and the presented secret: a changed secret hash
    (rotation, removal) never matches an old entry, and nothing in memory is the secret.
    """

    def __init__(self, entries: int = 1024, ttl: int = 60) -> None:
        self._entries = entries
        self._ttl = ttl
        self._data: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(client: Client, presented: str) -> bytes:
        material = f"{client.client_id}\x00{client.secret_hash}\x00{presented}".encode()
        return hashlib.sha256(material).digest()

    def check(self, client: Client, presented: str) -> bool:
        key = self._key(client, presented)
        with self._lock:
            until = self._data.get(key)
            if until is not None and until > time.monotonic():
                return True
        if not verify_secret(presented, client.secret_hash):
            return False
        with self._lock:
            self._data[key] = time.monotonic() + self._ttl
            self._data.move_to_end(key)
            while len(self._data) > self._entries:
                self._data.popitem(last=False)
        return True


SECRET_CACHE = _SecretCache()


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(client_id, secret)`` from an ``Authorization: Basic`` value, or None if it is not Basic.

    Raises :class:`OAuthError` (invalid_client) for a Basic header that does not decode.
    """
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    value = value.strip()
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_client", "Malformed HTTP Basic credentials.", 401, basic_challenge=True) from None
    if ":" not in decoded:
        raise OAuthError("invalid_client", "Malformed HTTP Basic credentials.", 401, basic_challenge=True)
    raw_id, _, raw_secret = decoded.partition(":")
    return unquote_plus(raw_id), unquote_plus(raw_secret)


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
    assertion = form.get("client_assertion", "")
    if assertion and len(assertion) <= MAX_ASSERTION_BYTES:
        try:
            iss = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return ""
        return iss if isinstance(iss, str) else ""
    return ""


def authenticate(
    settings: Settings,
    store: Store,
    form: dict[str, str],
    authorization: str | None,
    endpoint_url: str,
    *,
    allow_public: bool = True,
    now: int | None = None,
) -> AuthenticatedClient:
    """Authenticate the client of one request, or raise :class:`OAuthError`.

    ``form`` holds the request's single-valued form parameters; ``endpoint_url`` is the URL
    of the endpoint being called (accepted as a client assertion audience besides the issuer).
    """
    now = int(time.time()) if now is None else now
    basic = parse_basic(authorization) if authorization else None
    if authorization and basic is None:
        raise OAuthError("invalid_client", "Only HTTP Basic client authentication is accepted in the header.", 401)
    has_post_secret = "client_secret" in form
    has_assertion = "client_assertion" in form or "client_assertion_type" in form
    used = sum(bool(x) for x in (basic is not None, has_post_secret, has_assertion))
    if used > 1:
        raise OAuthError(
            "invalid_request", "Use exactly one client authentication method.", basic_challenge=basic is not None
        )

    if basic is not None:
        client_id, secret = basic
        if "client_id" in form and form["client_id"] != client_id:
            raise OAuthError(
                "invalid_request", "client_id in the body differs from the HTTP Basic user.", basic_challenge=True
            )
        client = _secret_client(settings, store, client_id, secret, "client_secret_basic", basic=True)
        return AuthenticatedClient(client, "client_secret_basic")
    if has_post_secret:
        client = _secret_client(
            settings, store, form.get("client_id", ""), form["client_secret"], "client_secret_post", basic=False
        )
        return AuthenticatedClient(client, "client_secret_post")
    if has_assertion:
        client = _assertion_client(settings, store, form, endpoint_url, now)
        return AuthenticatedClient(client, "private_key_jwt")
    client = find_client(settings, store, form.get("client_id"))
    if client is None or not client.public:
        raise OAuthError("invalid_client", "Client authentication failed.", 401)
    if not allow_public:
        raise OAuthError("invalid_client", "This endpoint requires client authentication.", 401)
    return AuthenticatedClient(client, "none")


def _secret_client(
    settings: Settings, store: Store, client_id: str, secret: str, method: str, *, basic: bool
) -> Client:
    client = find_client(settings, store, client_id)
    if client is None or client.auth_method != method or not client.secret_hash:
        # Spend the same scrypt time on unknown clients so timing does not reveal which exist.
        verify_secret(secret, _DUMMY_HASH)
        raise OAuthError("invalid_client", "Client authentication failed.", 401, basic_challenge=basic)
    if not SECRET_CACHE.check(client, secret):
        raise OAuthError("invalid_client", "Client authentication failed.", 401, basic_challenge=basic)
    return client


_DUMMY_HASH = "scrypt$14$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def _assertion_client(settings: Settings, store: Store, form: dict[str, str], endpoint_url: str, now: int) -> Client:
    fail = OAuthError("invalid_client", "Client assertion rejected.", 401)
    if form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
        raise OAuthError("invalid_client", "client_assertion_type must be the RFC 7523 JWT bearer type.", 401)
    assertion = form.get("client_assertion", "")
    if not assertion or len(assertion) > MAX_ASSERTION_BYTES:
        raise fail
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise fail from None
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or unverified.get("sub") != client_id:
        raise fail
    if "client_id" in form and form["client_id"] != client_id:
        raise fail
    client = find_client(settings, store, client_id)
    if client is None or client.auth_method != "private_key_jwt" or not client.jwks:
        raise fail
    alg = header.get("alg")
    if alg not in ASSERTION_ALGORITHMS or any(h in header for h in ("jku", "jwk", "x5u", "x5c", "crit")):
        raise fail
    key = _client_key(client, header.get("kid"), alg)
    if key is None:
        raise fail
    leeway = settings.limits.clock_leeway_seconds
    try:
        claims = jwt.decode(
            assertion,
            key=key,
            algorithms=[alg],
            leeway=leeway,
            options={"require": ["exp", "jti", "iss", "sub", "aud"], "verify_aud": False},
        )
    except jwt.PyJWTError:
        raise fail from None
    aud = claims["aud"]
    accepted = {settings.issuer, settings.issuer.rstrip("/"), endpoint_url}
    if isinstance(aud, list):
        if len(aud) != 1:
            raise fail
        aud = aud[0]
    if not isinstance(aud, str) or aud not in accepted:
        raise fail
    exp = claims["exp"]
    if not isinstance(exp, int) or exp - now > MAX_ASSERTION_LIFETIME:
        raise fail
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise fail
    if not store.add_ticket("client_assertion", f"{client.client_id}:{jti}", {}, ttl=max(1, exp - now + leeway)):
        raise OAuthError("invalid_client", "Client assertion replayed.", 401)
    return client


def _client_key(client: Client, kid: str | None, alg: str) -> object | None:
    """The public key of the client's registered JWKS for this kid (the only key if no kid)."""
    keys = (client.jwks or {}).get("keys")
    if not isinstance(keys, list):
        return None
    raw = [k for k in keys if isinstance(k, dict) and (kid is None or k.get("kid") == kid)]
    if len(raw) != 1:
        return None
    data = raw[0]
    if alg not in ASSERTION_ALGORITHMS:
        return None
    expected_kty = "RSA" if alg.startswith("RS") else "EC"
    if data.get("kty") != expected_kty or data.get("alg", alg) != alg or "d" in data or data.get("use", "sig") != "sig":
        return None
    # The same key rules as every other key we accept (trust/keyset): public, EC P-256 or
    # RSA >= 2048 bits with e >= 65537.
    try:
        resolved = parse_key({name: value for name, value in data.items() if name != "alg"})
    except ValueError:
        return None
    if key_misfit(dataclasses.replace(resolved, alg=alg), alg) is not None:
        return None
    return resolved.key
