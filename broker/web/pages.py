"""Rendering the broker's HTML pages with a strict policy: no scripts, no framing, no caching."""

from __future__ import annotations

from typing import Any

from flask import Response, render_template

#: Styles come only from our one stylesheet (no inline styles, no inline scripts, no scripts at all).
PAGE_CSP = "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"


def page(template: str, status: int = 200, **context: Any) -> Response:
    """A rendered page (Jinja autoescapes every value) with page headers."""
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def error_page(title: str, message: str, status: int = 400) -> Response:
    """The HTML error page used where redirecting would be unsafe (bad client, bad redirect URI)."""
    return page("error.html", status=status, title=title, message=message)


def redirect_303(location: str) -> Response:
    """A 303 See Other, never cached: after a form POST the browser must GET, never re-POST (RFC 9700 4.12)."""
    response = Response(status=303)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
