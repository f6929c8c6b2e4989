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

from dataclasses import dataclass, field

from flask import Response, jsonify

NO_STORE = {"Cache-Control": "no-cache, no-store", "Pragma": "no-cache"}


@dataclass
class OAuthError(Exception):
    """Raise from a token-style endpoint; becomes the RFC 6749 5.2 JSON answer."""

    error: str
    description: str
    status: int = 400
    basic_challenge: bool = False  # the client tried HTTP Basic: answer with WWW-Authenticate: Basic
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, realm: str) -> Response:
        response = jsonify(error=self.error, error_description=self.description)
        response.status_code = self.status
        response.headers.update(NO_STORE)
        if self.status == 401 and self.basic_challenge:
            response.headers["WWW-Authenticate"] = f'Basic realm="{realm}"'
        response.headers.update(self.headers)
        return response


@dataclass
class BearerError(Exception):
    """Raise from a bearer-protected endpoint (RFC 6750 3); ``error`` None means no token was sent."""

    error: str | None
    description: str = ""
    status: int = 401

    def response(self, realm: str) -> Response:
        if self.error is None:
            response = jsonify(error="invalid_request", error_description="A bearer token is required.")
            response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
        else:
            response = jsonify(error=self.error, error_description=self.description)
            safe = self.description.replace('"', "'").replace("\\", "/")
            response.headers["WWW-Authenticate"] = (
                f'Bearer realm="{realm}", error="{self.error}", error_description="{safe}"'
            )
        response.status_code = self.status
        response.headers.update(NO_STORE)
        return response


def no_store(response: Response) -> Response:
    """Mark a response that carries a token or secret as never cacheable (AAI 1.2, RFC 6749 5.1)."""
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["Pragma"] = "no-cache"
    return response
