"""The OP's authlib ``AuthorizationServer``, framework-neutral, with every dependency injected.

:class:`OAuthServer` subclasses ``authlib.oauth2.rfc6749.AuthorizationServer`` (not the Flask
integration, which reads Flask's request global). It is given an :class:`OAuthRequest` built
by the web adapter and answers with an :class:`Answer` (status, JSON body, headers) that the
adapter turns into a response, so the grants and endpoints never touch Flask. What it adds:

- ``query_client`` over :class:`~broker.oidc.clients.ClientRegistry`;
- client authentication through authlib's registry with our methods and rules
  (:mod:`broker.oidc.client_auth`);
- ``save_token``: a refresh token's hash joins its grant's family (revoked at birth when a
  replayed code already ended the grant);
- errors: authlib's ``OAuth2Error`` becomes our :class:`~broker.oidc.errors.OAuthError`
  (:func:`~broker.oidc.errors.from_authlib`), raised to the one error renderer; token
  answers carry ``Cache-Control: no-cache, no-store`` and ``Pragma: no-cache``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.base import OAuth2Error  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.authenticate_client import ClientAuthentication  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload  # type: ignore[import-untyped]
from werkzeug.datastructures import MultiDict

from broker.oidc.client_auth import ClientAuthenticator, registry_functions
from broker.oidc.clients import ClientRegistry, OAuthClient
from broker.oidc.errors import NO_STORE, OAuthError, from_authlib
from broker.oidc.passwords import token_hash
from broker.oidc.records import RefreshToken
from broker.oidc.repository import OidcRepository

# A refresh token not used for this long stops working (idle lifetime; OA-20 case 6).
REFRESH_IDLE_SECONDS = 7 * 86400
# authlib refuses a request URI that is not https or loopback; ours is built from the issuer
# (never from the Host header), and whether that is https is the operator's choice, checked
# by the settings. The check is therefore made against this stand-in, then the real URI set.
_TRANSPORT_CHECKED = "https://issuer.invalid/"


class OAuthRequest(OAuth2Request):  # type: ignore[misc]  # authlib has no type information
    """One request to a token-style endpoint, as authlib's grants and endpoints read it.

    ``params`` are the single-valued form parameters (already checked: no repeats, no query);
    ``raw`` keeps the repeatable ones (``resource``, ``audience``); ``endpoint_url`` is the
    endpoint's URL under our issuer (a client assertion's accepted audience).
    """

    def __init__(
        self,
        method: str,
        endpoint_url: str,
        params: dict[str, str],
        *,
        authorization: str | None = None,
        raw: MultiDict[str, str] | None = None,
        address: str = "",
    ) -> None:
        headers = {"Authorization": authorization} if authorization is not None else {}
        super().__init__(method, _TRANSPORT_CHECKED, headers=headers)
        self.uri = endpoint_url
        self.endpoint_url = endpoint_url
        self.params = params
        self.raw: MultiDict[str, str] = raw if raw is not None else MultiDict()
        self.address = address
        self.authorization = authorization
        self.payload = BasicOAuth2Payload(params)

    @property
    def form(self) -> dict[str, str]:
        return self.params

    @property
    def args(self) -> dict[str, str]:
        return {}


@dataclass
class Answer:
    """What an endpoint answers: status, a JSON body (or "" for none) and headers."""

    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)


class OAuthServer(AuthorizationServer):  # type: ignore[misc]  # authlib has no type information
    """authlib's authorization server with our clients, client authentication, tokens and errors.

    ``context`` is what grants and endpoints reach through ``self.server.context`` (the
    :class:`broker.oidc.provider.OpenIDProvider`'s parts).
    """

    def __init__(
        self,
        clients: ClientRegistry,
        authenticator: ClientAuthenticator,
        repository: OidcRepository,
        context: Any,
    ) -> None:
        super().__init__(scopes_supported=None)  # scopes are per client (OAuthClient.get_allowed_scope)
        self.clients = clients
        self.authenticator = authenticator
        self.repository = repository
        self.context = context
        self.registry = ClientAuthentication(self.query_client)
        for name, function in registry_functions(authenticator).items():
            self.registry.register(name, function)

    # ------------------------------------------------------------------ authlib's hooks

    def query_client(self, client_id: str) -> OAuthClient | None:
        return self.clients.oauth_client(client_id)

    def create_oauth2_request(self, request: OAuthRequest) -> OAuthRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> Answer:
        merged = dict(headers or [])
        merged.update(NO_STORE)
        return Answer(status, body if isinstance(body, dict | str) else str(body), merged)

    def handle_error_response(self, request: OAuthRequest, error: OAuth2Error) -> Answer:
        raise from_authlib(error, basic=_is_basic(request.authorization))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib's signals: none are used."""

    def authenticate_client(self, request: OAuthRequest, methods: list[str], endpoint: str = "token") -> OAuthClient:
        """Our client authentication (rules and rate limit), dispatched through authlib's registry."""

        def run(method: str) -> Any:
            try:
                return self.registry.authenticate(request, [method], endpoint).record
            except OAuth2Error as exc:
                raise from_authlib(exc, basic=_is_basic(request.authorization)) from None

        auth = self.authenticator.authenticate(
            request.params,
            request.authorization,
            request.endpoint_url,
            methods=methods,
            address=request.address,
            run=run,
        )
        client = OAuthClient(auth.client)
        request.auth_method = auth.method
        request.client = client
        return client

    def save_token(self, token: Mapping[str, Any], request: OAuthRequest) -> None:
        """Keep the hash of a new refresh token in its grant's family (idle and absolute limits)."""
        refresh = token.get("refresh_token")
        if not refresh:
            return
        user = request.user
        now = user.now
        grant = user.grant
        self.repository.put_refresh_token(
            RefreshToken(
                token_hash=token_hash(refresh),
                family_id=grant.grant_id,
                identity_id=grant.identity_id,
                client_id=grant.client_id,
                scope=" ".join(grant.scope),
                issued_at=now,
                expires_at=min(grant.expires_at, now + REFRESH_IDLE_SECONDS),
            )
        )

    # ------------------------------------------------------------------ our entry points

    def token_answer(self, request: OAuthRequest) -> Answer:
        """``POST /token``: authlib's grant dispatch; an unknown ``grant_type`` is ``unsupported_grant_type``."""
        if not request.params.get("grant_type"):
            raise OAuthError("invalid_request", "grant_type is required.")
        answer: Answer = self.create_token_response(request)
        return answer

    def endpoint_answer(self, name: str, request: OAuthRequest) -> Answer:
        """One of the registered endpoints (``introspection``, ``revocation``, ``device_authorization``)."""
        answer: Answer = self.create_endpoint_response(name, request)
        return answer


def _is_basic(authorization: str | None) -> bool:
    return bool(authorization) and str(authorization).strip().lower().startswith("basic ")
