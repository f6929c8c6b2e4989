"""OAuth 2.0 error answers, in the exact shapes of THREAT-MODEL section 0.

- Token, introspection, revocation and device endpoints: JSON ``{"error", "error_description"}``,
  400 (401 for ``invalid_client``, with ``WWW-Authenticate: Basic`` when the client tried HTTP
  Basic), always ``Cache-Control: no-store`` and ``Pragma: no-cache`` (RFC 6749 5.2).
- Bearer-protected endpoints (userinfo): 401 with ``WWW-Authenticate: Bearer`` and an ``error``
  attribute only when a token was presented (RFC 6750 3).
- The authorization endpoint redirects its errors to the validated redirect URI, except a bad
  client or redirect URI, which is an HTML page (see ``authorize.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    ) -> None:
        super().__init__(description, status=status, code=error, headers=headers)
        self.basic_challenge = basic_challenge  # the client tried HTTP Basic: answer with WWW-Authenticate: Basic

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


def no_store(response: Response) -> Response:
    """Mark a response that carries a token or secret as never cacheable (AAI 1.2, RFC 6749 5.1)."""
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["Pragma"] = "no-cache"
    return response
