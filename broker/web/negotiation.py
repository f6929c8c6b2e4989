"""Who is asking: a browser (an HTML page) or a program (JSON)?

The route decides first: the API families (:data:`API_PREFIXES`: the DAC REST API, the OAuth
endpoints a client calls, GA4GH/DRS, the data routes, discovery and health) always answer
JSON, whatever the ``Accept`` header says, so a client never has to parse a page. Elsewhere
(the login, account, consent, device and DAC pages, ``/``, and unknown paths), a request gets
HTML only when its ``Accept`` header names ``text/html`` and ranks it above JSON, as browsers
do; ``curl`` (``*/*``), programs and a missing header get JSON.

Pages that render their own refusal (the authorization, consent, login and DAC pages:
:func:`broker.web.pages.error_page`) answer with the page unless the client names JSON and
prefers it (:func:`prefers_json`), so a browser flow never depends on its ``Accept`` header.
"""

from __future__ import annotations

from flask import Request

#: Paths that always answer JSON (exact, or followed by ``/``).
API_PREFIXES = (
    "/api",
    "/token",
    "/userinfo",
    "/introspect",
    "/revoke",
    "/device_authorization",
    "/ga4gh",
    "/data",
    "/gateway",
    "/.well-known",
    "/healthz",
    "/readyz",
    "/metrics",
)
HTML = "text/html"
JSON = "application/json"


def is_api_path(path: str) -> bool:
    """Whether ``path`` belongs to a route family that always answers JSON."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES)


def wants_html(request: Request) -> bool:
    """Whether this request should get an HTML page rather than JSON (see the module docstring)."""
    if is_api_path(request.path):
        return False
    accept = request.accept_mimetypes
    named = any(value == HTML and quality > 0 for value, quality in accept)
    return named and accept.best_match([JSON, HTML]) == HTML


def prefers_json(request: Request) -> bool:
    """Whether a page's own refusal should be JSON: an API route, or ``Accept`` naming JSON above HTML."""
    if is_api_path(request.path):
        return True
    accept = request.accept_mimetypes
    named = any(value == JSON and quality > 0 for value, quality in accept)
    return named and accept.best_match([HTML, JSON]) == JSON
