"""The OpenID Provider: one typed service the container builds once and the web adapter serves.

:class:`OpenIDProvider` takes only what it needs (its settings section, our issuer, the store
kernel, the key ring, the identity directory, the browser sessions, the ``visas_for``
callable) and assembles the parts: the records (:mod:`~broker.oidc.repository`), clients,
access tokens, client authentication, consents, and authlib's authorization server with our
grants and endpoints registered on it:

======================================  ==================================================
authlib                                 ours, registered on it or beside it
======================================  ==================================================
``AuthorizationServer`` (rfc6749)       :class:`~broker.oidc.server.OAuthServer`
``AuthorizationCodeGrant``              :class:`~broker.oidc.grants.CodeGrant` (atomic single use)
``CodeChallenge`` (rfc7636)             :class:`~broker.oidc.pkce.S256CodeChallenge`
``OpenIDCode`` (oidc.core)              :class:`~broker.oidc.grants.OpenIDTokenExtension`
``RefreshTokenGrant``                   :class:`~broker.oidc.grants.RefreshGrant` (reuse detection)
``DeviceCodeGrant``, endpoint (rfc8628) :class:`~broker.oidc.grants.DeviceGrant`, :mod:`~broker.oidc.endpoints`
``IntrospectionEndpoint`` (rfc7662)     :class:`~broker.oidc.endpoints.Introspection`
``RevocationEndpoint`` (rfc7009)        :class:`~broker.oidc.endpoints.Revocation`
``JWTBearerTokenGenerator`` (rfc9068)   :class:`~broker.oidc.tokens.AccessTokenGenerator`
client-auth registry                    :mod:`~broker.oidc.client_auth` (private_key_jwt by core/jose)
metadata models (rfc8414, rfc9207)      :mod:`~broker.oidc.discovery` (validated at build)
(none)                                  token exchange (RFC 8693), RFC 9207 ``iss``, rate limits
======================================  ==================================================

It also serves the login area as its :class:`broker.login.service.PendingAuthorizations`
(``client_name``, ``continue_location``, ``abort``) and its consent book (``consents``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from werkzeug.datastructures import MultiDict

from broker.core.cache import VerifiedCache
from broker.core.models import PASSPORT_CLAIM, PASSPORT_SCOPE
from broker.identity.service import IdentityDirectory
from broker.oidc.authorization import Authorizations, Refusal
from broker.oidc.client_auth import ClientAuthenticator
from broker.oidc.clients import ClientRegistry
from broker.oidc.consent import Consents
from broker.oidc.device import DeviceVerification
from broker.oidc.discovery import metadata, validate
from broker.oidc.endpoints import DeviceAuthorizations, Introspection, Revocation
from broker.oidc.errors import BearerError
from broker.oidc.grants import CodeGrant, DeviceGrant, OpenIDTokenExtension, RefreshGrant
from broker.oidc.logout import ConfirmLogout, LoggedOut, logout
from broker.oidc.pkce import S256CodeChallenge
from broker.oidc.repository import OidcRepository
from broker.oidc.server import Answer, OAuthRequest, OAuthServer
from broker.oidc.settings import OidcSettings
from broker.oidc.token_exchange import TokenExchangeGrant
from broker.oidc.tokens import AccessTokenGenerator, AccessTokens, InvalidToken, TokenKeys
from broker.store.kernel import Kernel
from broker.web.rate_limit import RateLimiter
from broker.web.session import BrowserSession, Sessions

#: A revoked grant stays marked at least this long (longer when access tokens live longer).
FAMILY_MARKER_MIN_SECONDS = 3600


def quiet_authlib() -> None:
    """authlib logs every token it issues at DEBUG ("Issue token %r to %r"): never below INFO (OA-33).

    Secrets must not reach a log whatever ``log_level`` says; our own modules log token ids only.
    """
    authlib_log = logging.getLogger("authlib")
    if authlib_log.level < logging.INFO:  # NOTSET (0) too: it would inherit a DEBUG root
        authlib_log.setLevel(logging.INFO)


class OpenIDProvider:
    """The OP (see the module docstring). ``clock`` gives epoch seconds (tests move it)."""

    def __init__(
        self,
        *,
        settings: OidcSettings,
        issuer: str,
        kernel: Kernel,
        keys: TokenKeys,
        identities: IdentityDirectory,
        sessions: Sessions,
        visas_for: Callable[[str], list[str]],
        leeway: int,
        max_json_depth: int,
        interaction_lifetime_seconds: int,
        token_cache: VerifiedCache | None = None,
        pepper: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.issuer = issuer
        self.kernel = kernel
        self.keys = keys
        self.identities = identities
        self.sessions = sessions
        self.visas_for = visas_for
        self.interaction_lifetime_seconds = interaction_lifetime_seconds
        self.clock = clock
        marker = max(FAMILY_MARKER_MIN_SECONDS, settings.access_token_lifetime_seconds + leeway)
        self.repository = OidcRepository(kernel, family_marker_seconds=marker)
        self.clients = ClientRegistry(settings.clients, self.repository, pepper)
        self._pepper = pepper
        self.limiter = RateLimiter(kernel)
        self.tokens = AccessTokens(
            issuer=issuer,
            settings=settings,
            keys=keys,
            repository=self.repository,
            leeway=leeway,
            max_json_depth=max_json_depth,
            cache=token_cache,
            clock=clock,
        )
        self.authenticator = ClientAuthenticator(
            self.clients,
            self.repository,
            issuer=issuer,
            leeway=leeway,
            max_json_depth=max_json_depth,
            limiter=self.limiter,
            pepper=pepper,
            clock=clock,
        )
        self.consents = Consents(self.repository, settings)
        self.server = OAuthServer(self.clients, self.authenticator, self.repository, self)
        self.server.register_token_generator("default", AccessTokenGenerator(self.tokens))
        self.server.register_grant(CodeGrant, [S256CodeChallenge(required=True), OpenIDTokenExtension()])
        self.server.register_grant(RefreshGrant)
        self.server.register_grant(DeviceGrant, [OpenIDTokenExtension()])
        self.server.register_grant(TokenExchangeGrant)
        self.server.register_endpoint(Introspection)
        self.server.register_endpoint(Revocation)
        self.server.register_endpoint(DeviceAuthorizations(self.server))
        self.authorizations = Authorizations(self)
        self.devices = DeviceVerification(self)
        self.metadata = metadata(issuer)
        validate(self.metadata)
        quiet_authlib()

    # ------------------------------------------------------------------ shared by the parts

    def refresh_successor(self, presented: str) -> str | None:
        """The refresh token a refresh with ``presented`` hands out: HMAC-SHA-256 under the server pepper.

        Deterministic, so a retried refresh gets the same successor (issue 11 item 9); None
        without a pepper (then every successor is random and there is no retry grace).
        """
        if self._pepper is None:
            return None
        mac = hmac.new(self._pepper, b"refresh-successor\x00" + presented.encode("utf-8"), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")

    def now(self) -> int:
        return int(self.clock())

    def endpoint_url(self, path: str) -> str:
        """An absolute URL of ours, always from the configured issuer (never from Host headers)."""
        return self.issuer.rstrip("/") + path

    def audit(self, event: dict[str, Any], at: int) -> None:
        self.kernel.audit_append(event, at)

    def display_name(self, identity_id: str) -> str:
        identity = self.identities.get(identity_id)
        return identity.display_name if identity is not None and identity.display_name else identity_id

    # ------------------------------------------------------------------ token-style endpoints

    def token(self, request: OAuthRequest) -> Answer:
        """``POST /token``."""
        return self.server.token_answer(request)

    def introspect(self, request: OAuthRequest) -> Answer:
        """``POST /introspect`` (RFC 7662)."""
        return self.server.endpoint_answer(Introspection.ENDPOINT_NAME, request)

    def revoke(self, request: OAuthRequest) -> Answer:
        """``POST /revoke`` (RFC 7009)."""
        return self.server.endpoint_answer(Revocation.ENDPOINT_NAME, request)

    def device_authorization(self, request: OAuthRequest) -> Answer:
        """``POST /device_authorization`` (RFC 8628 3.1)."""
        return self.server.endpoint_answer(DeviceAuthorizations.ENDPOINT_NAME, request)

    def userinfo(self, presented: str) -> dict[str, Any]:
        """The claims of the access token's holder; ``ga4gh_passport_v1`` only with that scope (OIDC Core 5.3)."""
        try:
            at = self.tokens.verify(presented)
        except InvalidToken:
            raise BearerError("invalid_token", "The access token is invalid, expired or revoked.") from None
        if "openid" not in at.scope:
            raise BearerError("insufficient_scope", "The access token lacks the openid scope.", 403)
        body: dict[str, Any] = {"iss": self.issuer, "sub": at.sub}
        identity = self.identities.get(at.sub)
        if identity is not None:
            if "profile" in at.scope and identity.display_name:
                body["name"] = identity.display_name
            if "email" in at.scope and identity.email:
                body["email"] = identity.email
        if PASSPORT_SCOPE in at.scope:
            body[PASSPORT_CLAIM] = self.visas_for(at.sub)
        return body

    def logout(
        self, source: MultiDict[str, str], session: BrowserSession | None, *, posted: bool
    ) -> Refusal | ConfirmLogout | LoggedOut:
        """``GET``/``POST /logout`` (RP-initiated logout)."""
        return logout(self, source, session, posted=posted)

    # ------------------------------------------------------------------ for the login area

    def client_name(self, interaction: str, browser: str) -> str | None:
        """The client of a pending request of this browser (None: unknown, expired or another browser's)."""
        found = self.authorizations.pending(interaction, browser)
        return found.client_id if found is not None else None

    def continue_location(self, interaction: str) -> str:
        """Where a browser goes after logging in for a pending request."""
        return self.authorizations.continue_location(interaction)

    def abort(self, interaction: str, browser: str, error: str, description: str) -> str | None:
        """End a pending request whose login failed; the client's redirect with ``error``, if any."""
        return self.authorizations.abort(interaction, browser, error, description)
