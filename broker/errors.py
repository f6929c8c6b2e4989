"""The one error type: every refusal the broker gives is a :class:`BrokerError`.

A refusal has an HTTP ``status``, a machine-readable ``code``, a ``message`` a person
understands, optional ``extra`` members for the JSON body and optional response ``headers``.
Areas subclass it to name their refusals (``dac.errors.Forbidden``, ``gateway.Refusal``,
``oidc.errors.OAuthError``...) and to fix a default status and code; nothing else renders
errors. One Flask handler (:func:`broker.web.errors.error_response`) turns any of them into
the answer: JSON ``{"error": code, "message": message, **extra}`` for programs, an HTML page
for browsers. A subclass whose protocol fixes another body shape (RFC 6749 5.2 for OAuth,
RFC 6750 3 for bearer-protected endpoints) overrides :meth:`BrokerError.body` and
:meth:`BrokerError.response_headers`, and still goes through the same handler.

Errors that never reach HTTP (a settings mistake at start, a policy file that does not load,
a token a verifier refuses) are BrokerErrors too, so a caller can always catch one type and
read one set of attributes; their ``status`` is what they would mean if they did reach a
client. This module imports nothing of the broker, so every layer may raise from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class BrokerError(Exception):
    """A refusal: ``status`` (HTTP), ``code`` (machine-readable), ``message`` (for a person).

    Subclasses set class-level defaults for ``status``, ``code`` and ``default_message``;
    any of them can be given per instance. ``extra`` is merged into the JSON body and
    ``headers`` into the response. The message never holds a token, a secret or a password.
    """

    status: int = 400
    code: str = "invalid_request"
    default_message: ClassVar[str] = "The request cannot be served."

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return {"error": self.code, "message": self.message, **self.extra}

    def response_headers(self, realm: str) -> dict[str, str]:
        """Headers of the answer; ``realm`` is our issuer, for authentication challenges."""
        return dict(self.headers)


class Unavailable(BrokerError):
    """A part the answer depends on cannot be reached in time: fail closed with 503."""

    status = 503
    code = "unavailable"
    default_message = "A part of the broker cannot be reached; try again shortly."

    def response_headers(self, realm: str) -> dict[str, str]:
        return {"Retry-After": "5", **self.headers}


class StartupError(BrokerError):
    """The broker cannot start as configured (a settings, key or policy problem); never an HTTP answer."""

    status = 500
    code = "startup_error"
