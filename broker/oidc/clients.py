"""OAuth clients: declared in settings or kept on the kernel, looked up by exact client_id.

Redirect URIs (and post-logout redirect URIs) are compared as whole strings, exactly
(OIDC Core 3.1.2.1 "Simple String Comparison", RFC 9700 4.1.3): no normalisation, no
prefix, no case folding, so every mutation an attacker tries is simply not equal.
:class:`OAuthClient` is how authlib sees a client (its ``ClientMixin``).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin  # type: ignore[import-untyped]

from broker.core.models import TOKEN_EXCHANGE_GRANT
from broker.errors import BrokerError
from broker.oidc.passwords import hmac_secret, new_secret
from broker.oidc.records import Client
from broker.oidc.repository import OidcRepository
from broker.oidc.scopes import DEFAULT_SCOPES, SCOPES
from broker.oidc.settings import DeclaredClientSettings
from broker.store.base import Conflict

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = ("authorization_code", "refresh_token", TOKEN_EXCHANGE_GRANT, DEVICE_CODE_GRANT)
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
MAX_CLIENT_ID_CHARS = 255


class ClientError(BrokerError, ValueError):
    """A client definition is invalid (bad URI, unknown grant, ...)."""

    status = 400
    code = "invalid_client_metadata"


class NoSuchClient(BrokerError, LookupError):
    """No client with that id in the store (a client declared in the settings file is changed there)."""

    status = 404
    code = "no_such_client"


class OAuthClient(ClientMixin):  # type: ignore[misc]  # authlib has no type information
    """A client as authlib's grants and endpoints ask about it."""

    def __init__(self, record: Client) -> None:
        self.record = record

    @property
    def client_id(self) -> str:
        return self.record.client_id

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # redirect_uri is always required (OIDC Core 3.1.2.1; OA-03)

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """``scope`` if every scope in it is allowed for this client, else None (invalid_scope)."""
        wanted = (scope or "").split()
        if any(s not in self.record.scopes for s in wanted):
            return None
        return " ".join(dict.fromkeys(wanted))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_registered(self.record, redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # secrets are checked by our client authentication (client_auth.py), never here

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.record.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.record.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.record.grant_types


def from_settings(declared: DeclaredClientSettings) -> Client:
    """The record for a client declared in the settings file."""
    return Client(
        client_id=declared.client_id,
        name=declared.name or declared.client_id,
        redirect_uris=tuple(declared.redirect_uris),
        grant_types=tuple(declared.grant_types),
        scopes=tuple(declared.scopes),
        auth_method=declared.auth_method,
        secret_hash=declared.secret_hash.get_secret_value() if declared.secret_hash else None,
        jwks=declared.jwks,
        post_logout_redirect_uris=tuple(declared.post_logout_redirect_uris),
        require_pkce=declared.require_pkce,
    )


def pkce_required(client: Client, require_pkce: bool) -> bool:
    """Whether an authorization request of ``client`` must carry a PKCE S256 challenge (OA-05).

    Always for a public client; for a confidential client unless the operator relaxed it,
    for every client (``oidc.require_pkce: false``) or for this one (its ``require_pkce: false``).
    """
    return client.public or (require_pkce and client.require_pkce)


def pkce_relaxations(clients: Sequence[Client], require_pkce: bool) -> list[str]:
    """One line per client that may skip PKCE, for the start-up log (a relaxation must never be silent)."""
    lines: list[str] = []
    for client in clients:
        if not pkce_required(client, require_pkce):
            why = "oidc.require_pkce is false" if not require_pkce else "its require_pkce is false"
            lines.append(
                f"PKCE relaxed for client {client.client_id!r} ({why}): its authorization requests "
                "may omit code_challenge (THREAT-MODEL OA-05 expects PKCE of every client)"
            )
    return lines


def redirect_uri_registered(client: Client, uri: str | None) -> bool:
    """Exact, whole-string membership of ``uri`` in the client's registered redirect URIs."""
    return uri is not None and any(uri == registered for registered in client.redirect_uris)


def logout_uri_registered(client: Client, uri: str | None) -> bool:
    """Exact, whole-string membership in the client's registered post-logout redirect URIs."""
    return uri is not None and any(uri == registered for registered in client.post_logout_redirect_uris)


def check_uri(uri: str) -> None:
    """A redirect URI we accept at registration: absolute http(s), no fragment, no user info."""
    if not uri.startswith(("https://", "http://")) or "#" in uri or any(c.isspace() for c in uri):
        raise ClientError(f"redirect URI must be an absolute http(s) URL without fragment or spaces: {uri!r}")
    authority = uri.split("://", 1)[1].split("/", 1)[0]
    if "@" in authority or "\\" in uri or not authority:
        raise ClientError(f"redirect URI must not carry user info or backslashes: {uri!r}")
    if len(uri) > 2000:
        raise ClientError("redirect URI is longer than 2000 characters")


def check_client(client: Client) -> None:
    """A stored client's definition is coherent (ClientError naming the first problem if not)."""
    if client.auth_method not in AUTH_METHODS:
        raise ClientError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    for grant in client.grant_types:
        if grant not in GRANT_TYPES:
            raise ClientError(f"unknown grant type {grant!r} (known: {', '.join(GRANT_TYPES)})")
    if client.auth_method == "none" and TOKEN_EXCHANGE_GRANT in client.grant_types:
        raise ClientError("token exchange requires client authentication; a public client cannot have it")
    for scope in client.scopes:
        if scope not in SCOPES:
            raise ClientError(f"unknown scope {scope!r} (known: {', '.join(SCOPES)})")
    if "authorization_code" in client.grant_types and not client.redirect_uris:
        raise ClientError("the authorization_code grant needs at least one redirect URI")
    for uri in (*client.redirect_uris, *client.post_logout_redirect_uris):
        check_uri(uri)
    if client.auth_method == "private_key_jwt" and not (
        isinstance(client.jwks, dict) and isinstance(client.jwks.get("keys"), list)
    ):
        raise ClientError('private_key_jwt needs the client\'s public keys as a JWKS ({"keys": [...]})')


@dataclass(frozen=True)
class NewClient:
    """What ``clients add`` created: the record and, once, the secret in the clear."""

    client: Client
    secret: str | None


class ClientRegistry:
    """The clients of the settings file (first) and of the kernel, by exact client_id."""

    def __init__(
        self, declared: Sequence[DeclaredClientSettings], repository: OidcRepository, pepper: bytes | None = None
    ) -> None:
        """``pepper`` (:mod:`broker.keys.pepper`) hashes the secrets :meth:`create` makes (none without it)."""
        self._declared = {c.client_id: from_settings(c) for c in declared}
        self._records = repository.clients
        self._pepper = pepper

    def get(self, client_id: object) -> Client | None:
        """The client with exactly this id, or None."""
        if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_CLIENT_ID_CHARS:
            return None
        for declared_id, declared in self._declared.items():
            if hmac.compare_digest(declared_id.encode(), client_id.encode()):
                return declared
        return self._records.get(client_id)

    def oauth_client(self, client_id: object) -> OAuthClient | None:
        """The client as authlib sees it (authlib's ``query_client``)."""
        found = self.get(client_id)
        return OAuthClient(found) if found is not None else None

    def declared(self) -> list[Client]:
        return list(self._declared.values())

    def stored(self) -> list[Client]:
        return list(self._records.scan())

    def delete(self, client_id: str) -> bool:
        return bool(client_id) and self._records.delete(client_id)

    def create(
        self,
        client_id: str,
        *,
        name: str = "",
        redirect_uris: tuple[str, ...] = (),
        grant_types: tuple[str, ...] | None = None,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        auth_method: str = "client_secret_basic",
        jwks: dict[str, Any] | None = None,
        post_logout_redirect_uris: tuple[str, ...] = (),
        require_pkce: bool = True,
        now: int | None = None,
    ) -> NewClient:
        """Validate and store a new client; a confidential secret client gets a fresh secret (shown once).

        The secret is stored as HMAC-SHA-256 under the server pepper (:mod:`broker.oidc.passwords`).

        ``require_pkce=False`` lets a confidential client skip PKCE (logged at every start); a
        public client cannot have it.
        """
        if not client_id or len(client_id) > MAX_CLIENT_ID_CHARS or any(c.isspace() or c == ":" for c in client_id):
            raise ClientError("client_id must be 1-255 characters without spaces or ':'")
        if client_id in self._declared:
            raise Conflict(f"client {client_id!r} is declared in the settings file")
        if grant_types is None:
            grant_types = ("authorization_code", "refresh_token", DEVICE_CODE_GRANT)
            if auth_method != "none":
                grant_types += (TOKEN_EXCHANGE_GRANT,)
        if auth_method == "none" and not require_pkce:
            raise ClientError("a public client always needs PKCE; only a confidential client may skip it")
        secret = new_secret() if auth_method in SECRET_METHODS else None
        if secret is not None and self._pepper is None:
            raise ClientError("no server pepper to hash a client secret with (see broker.keys.pepper)")
        client = Client(
            client_id=client_id,
            name=name or client_id,
            redirect_uris=tuple(redirect_uris),
            grant_types=tuple(grant_types),
            scopes=tuple(scopes),
            auth_method=auth_method,
            secret_hash=hmac_secret(secret, self._pepper) if secret and self._pepper else None,
            jwks=jwks if auth_method == "private_key_jwt" else None,
            post_logout_redirect_uris=tuple(post_logout_redirect_uris),
            created_at=int(time.time()) if now is None else now,
            require_pkce=require_pkce,
        )
        check_client(client)
        if not self._records.add(client):
            raise Conflict(f"client {client_id!r} already exists")
        return NewClient(client=client, secret=secret)

    def update(
        self,
        client_id: str,
        *,
        name: str | None = None,
        redirect_uris: tuple[str, ...] | None = None,
        grant_types: tuple[str, ...] | None = None,
        scopes: tuple[str, ...] | None = None,
        post_logout_redirect_uris: tuple[str, ...] | None = None,
        rotate_secret: bool = False,
    ) -> NewClient:
        """Change a stored client in one atomic read-modify-write; ``None`` keeps a field as it is.

        A list given replaces the client's list. ``rotate_secret`` gives a secret client a fresh
        secret (returned once; the old one stops working at once). The result is checked like a
        new client, so an update cannot make a client ``create`` would refuse.
        """
        if client_id in self._declared:
            raise Conflict(f"client {client_id!r} is declared in the settings file; change it there")
        current = self.get(client_id)
        if current is None:
            raise NoSuchClient(f"no client {client_id!r} in the store")
        if rotate_secret and current.auth_method not in SECRET_METHODS:
            raise ClientError(f"client {client_id!r} authenticates with {current.auth_method}, not a secret")
        if rotate_secret and self._pepper is None:
            raise ClientError("no server pepper to hash a client secret with (see broker.keys.pepper)")
        secret = new_secret() if rotate_secret else None
        hashed = hmac_secret(secret, self._pepper) if secret and self._pepper else None
        changes: dict[str, Any] = {
            key: value
            for key, value in (
                ("name", name),
                ("redirect_uris", redirect_uris),
                ("grant_types", grant_types),
                ("scopes", scopes),
                ("post_logout_redirect_uris", post_logout_redirect_uris),
            )
            if value is not None
        }
        if hashed is not None:
            changes["secret_hash"] = hashed

        def change(found: Client | None) -> Client:
            if found is None:
                raise NoSuchClient(f"no client {client_id!r} in the store")
            updated = replace(found, **changes)
            check_client(updated)
            return updated

        written = self._records.update(client_id, change)
        assert written is not None  # change() never deletes
        return NewClient(client=written, secret=secret)
