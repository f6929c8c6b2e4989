"""Rendering the broker's HTML pages with a strict policy: no scripts, no framing, no caching."""

from __future__ import annotations

from typing import Any

from flask import Response, json, render_template, request

from broker.web.negotiation import prefers_json

#: Styles come only from our one stylesheet (no inline styles, no inline scripts, no scripts at all).
PAGE_CSP = "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"


def page(template: str, status: int = 200, **context: Any) -> Response:
    """A rendered page (Jinja autoescapes every value) with page headers."""
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


#: The machine-readable code of a page's refusal when its caller names none.
STATUS_CODES = {
    400: "invalid_request",
    401: "login_required",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
}


def error_page(title: str, message: str, status: int = 400, code: str | None = None) -> Response:
    """The HTML error page used where redirecting would be unsafe (bad client, bad redirect URI).

    A client that asks for JSON (:func:`~broker.web.negotiation.prefers_json`) gets
    ``{"error": code, "message": message}`` with the same status instead.
    """
    if prefers_json(request):
        body = {"error": code or STATUS_CODES.get(status, "error"), "message": message}
        response = Response(json.dumps(body), status=status, mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        response.vary.add("Accept")
        return response
    response = page("error.html", status=status, title=title, message=message, code=code, status_code=status)
    response.vary.add("Accept")
    return response


def redirect_303(location: str) -> Response:
    """A 303 See Other, never cached: after a form POST the browser must GET, never re-POST (RFC 9700 4.12)."""
    response = Response(status=303)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
