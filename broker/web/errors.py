"""The one way an error becomes an HTTP answer.

:func:`install` registers the handlers on the app: a :class:`~broker.errors.BrokerError`
(any area's) through :func:`error_response`; Werkzeug's own HTTP errors (404 for an unknown
route, 405 with ``Allow``, 413 for a body over the limit) as BrokerErrors of the same status;
anything else as a logged 500 that says nothing of the cause. A view that must adjust an
error answer (the data route adds CORS headers) calls :func:`error_response` itself, so the
shape stays the same everywhere.

Browsers get pages, programs get JSON (:mod:`broker.web.negotiation`): the API route families
always answer JSON; elsewhere a request that prefers ``text/html`` gets the error page
(``error.html`` on the shared layout) with the same status, headers, code and message.
"""

from __future__ import annotations

import json as stdlib_json
import logging
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from broker.errors import BrokerError
from broker.web.negotiation import wants_html
from broker.web.pages import page

log = logging.getLogger("broker.web")

#: Where :func:`install` keeps the realm (our issuer) used in authentication challenges.
REALM_KEY = "BROKER_REALM"
#: Headers a Werkzeug HTTP error may carry over to the answer.
PASSED_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


#: The heading of an error page, by status (others: "Something went wrong").
PAGE_TITLES = {
    400: "Bad request",
    401: "Please sign in",
    403: "Not allowed",
    404: "Page not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported content type",
    429: "Too many requests",
    503: "Service unavailable",
}


def error_response(exc: BrokerError) -> Response:
    """The answer for ``exc``: its status and headers, with its JSON body, or its page for a browser."""
    realm = str(current_app.config.get(REALM_KEY, ""))
    if not wants_html(request):
        return error_answer(exc, realm)
    response = page(
        "error.html",
        status=exc.status,
        title=PAGE_TITLES.get(exc.status, "Something went wrong"),
        message=exc.message,
        code=exc.code,
        status_code=exc.status,
        home=True,
    )
    response.vary.add("Accept")
    response.headers.update(exc.response_headers(realm))
    return response


def error_answer(exc: BrokerError, realm: str) -> Response:
    """:func:`error_response` outside a Flask request (the gateway's lean data path): always JSON."""
    response = Response(stdlib_json.dumps(exc.body(), default=str), status=exc.status, mimetype="application/json")
    response.headers.update(exc.response_headers(realm))
    return response


def internal_error() -> BrokerError:
    """What an unexpected exception is answered with: a 500 that says nothing of the cause."""
    return BrokerError("The broker failed to handle this request.", status=500, code="internal_error")


def _from_http(exc: HTTPException) -> BrokerError:
    code = (exc.name or "error").lower().replace(" ", "_")
    passed = dict(exc.get_headers())
    headers = {name: passed[name] for name in PASSED_HEADERS if name in passed}
    return BrokerError(exc.description or exc.name, status=exc.code or 500, code=code, headers=headers)


def install(app: Flask, realm: str) -> None:
    """Register the error handlers on ``app``; ``realm`` names us in authentication challenges."""
    app.config[REALM_KEY] = realm

    @app.errorhandler(BrokerError)
    def broker_error(exc: BrokerError) -> Any:
        if exc.status >= 500:
            log.warning("%s (%s): %s", exc.code, exc.status, exc.message)
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return error_response(_from_http(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(internal_error())
