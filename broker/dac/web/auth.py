"""Authentication of DAC API callers, from the OpenID Provider's own checks (no locator).

- :func:`token_authenticator`: a bearer access token of ours (``at+jwt``), checked by the
  ``verify(token)`` the composition root passes (``verify_access_token`` bound to the key ring,
  settings and store). No or a malformed ``Authorization`` header: ``401 invalid_token`` with a
  ``WWW-Authenticate: Bearer`` challenge; a token in the query or two headers: ``400``.
- :func:`client_authenticator`: an OAuth client authenticating itself as at the token endpoint
  (HTTP Basic or ``private_key_jwt``), for the permissions API; a failure is ``401 invalid_client``,
  a caller past a rate limit (failures per address, requests per client) ``429`` with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Request

from broker.dac.web.context import Authenticate, Principal
from broker.errors import BrokerError
from broker.oidc.client_auth import AuthenticatedClient
from broker.oidc.errors import OAuthError
from broker.oidc.tokens import AccessToken, InvalidToken
from broker.web.rate_limit import client_address

#: ``(form, Authorization header, endpoint URL, client address) -> AuthenticatedClient`` or OAuthError
#: (confidential clients only; 429 ``too_many_requests`` past a limit).
ClientCheck = Callable[[dict[str, str], str | None, str, str], AuthenticatedClient]


def _unauthorized() -> BrokerError:
    return BrokerError(
        "A bearer access token is required.",
        status=401,
        code="invalid_token",
        headers={"WWW-Authenticate": 'Bearer realm="dac"'},
    )


def bearer_token(req: Request) -> str:
    """The one bearer token of the request's ``Authorization`` header, or a BrokerError."""
    headers = req.headers.getlist("Authorization")
    if "access_token" in req.args or len(headers) > 1:
        raise BrokerError(
            "Send the access token once, in the Authorization header.", status=400, code="invalid_request"
        )
    if not headers:
        raise _unauthorized()
    scheme, _, value = headers[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthorized()
    return value.strip()


def token_authenticator(verify: Callable[[str], AccessToken]) -> Authenticate:
    """``authenticate(request)`` for our live access tokens, checked by ``verify`` (raises InvalidToken)."""

    def authenticate(req: Request) -> Principal:
        token = bearer_token(req)
        try:
            checked = verify(token)
        except InvalidToken as exc:
            raise BrokerError(
                "The access token is not valid.",
                status=401,
                code="invalid_token",
                extra={"reason": exc.reason},
                headers={"WWW-Authenticate": 'Bearer realm="dac", error="invalid_token"'},
            ) from None
        return Principal(identity=checked.sub, client_id=checked.client_id, scopes=frozenset(checked.scope))

    return authenticate


def client_authenticator(check: ClientCheck, issuer: str) -> Authenticate:
    """``authenticate_client(request)`` by client authentication; ``issuer`` + path is the endpoint URL."""

    def authenticate(req: Request) -> Principal:
        form = dict(req.form.items()) if req.mimetype == "application/x-www-form-urlencoded" else {}
        try:
            auth = check(form, req.headers.get("Authorization"), issuer.rstrip("/") + req.path, client_address(req))
        except OAuthError as exc:
            if exc.status == 429:
                raise BrokerError(exc.message, status=429, code="too_many_requests", headers=exc.headers) from None
            raise BrokerError(
                "Client authentication failed.",
                status=401,
                code="invalid_client",
                headers={"WWW-Authenticate": 'Basic realm="permissions"'},
            ) from None
        return Principal(identity=None, client_id=auth.client.client_id, scopes=frozenset(auth.client.scopes))

    return authenticate
