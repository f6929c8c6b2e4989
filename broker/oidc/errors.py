"""OAuth 2.0 error answers, in the exact shapes of THREAT-MODEL section 0.

- Token, introspection, revocation and device endpoints: JSON ``{"error", "error_description"}``,
  400 (401 for ``invalid_client``, with ``WWW-Authenticate: Basic`` when the client tried HTTP
  Basic), always ``Cache-Control: no-store`` and ``Pragma: no-cache`` (RFC 6749 5.2).
- Bearer-protected endpoints (userinfo): 401 with ``WWW-Authenticate: Bearer`` and an ``error``
  attribute only when a token was presented (RFC 6750 3).
- The authorization endpoint redirects its errors to the validated redirect URI, except a bad
  client or redirect URI, which is an HTML page (see ``authorization.py``).

authlib raises its own ``OAuth2Error``; :func:`from_authlib` turns one into an
:class:`OAuthError` at the edge of every authlib call, so the broker still has one error type
and one renderer (``broker.web.errors``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authlib.oauth2.base import OAuth2Error  # type: ignore[import-untyped]
from flask import Response

from broker.errors import BrokerError

NO_STORE = {"Cache-Control": "no-cache, no-store", "Pragma": "no-cache"}


class OAuthError(BrokerError):
    """Raise from a token-style endpoint; becomes the RFC 6749 5.2 JSON answer.

    ``error`` is the RFC 6749 error code (also ``code``), ``description`` the
    ``error_description`` (also ``message``).
    """

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        basic_challenge: bool = False,
        headers: Mapping[str, str] | None = None,
        redirect_uri: str | None = None,
    ) -> None:
        super().__init__(description, status=status, code=error, headers=headers)
        self.basic_challenge = basic_challenge  # the client tried HTTP Basic: answer with WWW-Authenticate: Basic
        # At the authorization endpoint: the validated redirect URI the error goes back to
        # (None: an HTML page, never a redirect).
        self.redirect_uri = redirect_uri

    @classmethod
    def too_many(cls, retry_after: int) -> OAuthError:
        """429 ``too_many_requests`` with ``Retry-After`` (OA-18, OA-25)."""
        return cls(
            "too_many_requests",
            f"Too many requests; retry after {retry_after} seconds.",
            429,
            headers={"Retry-After": str(retry_after)},
        )

    @property
    def error(self) -> str:
        return self.code

    @property
    def description(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.message}

    def response_headers(self, realm: str) -> dict[str, str]:
        headers = dict(NO_STORE)
        if self.status == 401 and self.basic_challenge:
            headers["WWW-Authenticate"] = f'Basic realm="{realm}"'
        headers.update(self.headers)
        return headers


class BearerError(BrokerError):
    """Raise from a bearer-protected endpoint (RFC 6750 3); ``error`` None means no token was sent."""

    def __init__(self, error: str | None, description: str = "", status: int = 401) -> None:
        super().__init__(
            description if error is not None else "A bearer token is required.",
            status=status,
            code=error if error is not None else "invalid_request",
        )
        self.token_sent = error is not None

    @property
    def error(self) -> str | None:
        return self.code if self.token_sent else None

    @property
    def description(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.message}

    def response_headers(self, realm: str) -> dict[str, str]:
        if not self.token_sent:
            challenge = f'Bearer realm="{realm}"'
        else:
            safe = self.message.replace('"', "'").replace("\\", "/")
            challenge = f'Bearer realm="{realm}", error="{self.code}", error_description="{safe}"'
        return {"WWW-Authenticate": challenge, **NO_STORE}


def from_authlib(error: OAuth2Error, *, basic: bool = False) -> OAuthError:
    """authlib's error as ours: same ``error`` code and description; 401 for ``invalid_client``
    (every client authentication failure is 401 here, THREAT-MODEL EPM g), else 400 (authlib
    answers a few errors 401 that RFC 6749 5.2 and RFC 7009 2.2.1 make 400).
    ``basic``: the client tried HTTP Basic, so the 401 carries ``WWW-Authenticate: Basic``."""
    code = str(error.error or "invalid_request")
    status = 401 if code == "invalid_client" else 400
    description = str(error.get_error_description() or code)
    return OAuthError(code, description, status, basic_challenge=basic, redirect_uri=error.redirect_uri)


def no_store(response: Response) -> Response:
    """Mark a response that carries a token or secret as never cacheable (AAI 1.2, RFC 6749 5.1)."""
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["Pragma"] = "no-cache"
    return response
