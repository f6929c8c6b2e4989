"""The lean path of the data routes: GET and HEAD on ``/data/`` and the decision endpoint, without Flask.

A genome browser reads one object in hundreds of small Range requests, and nginx asks the
decision endpoint once per request it forwards. Once the decision is cached and the audit
counts repeats in memory (issue 12), most of such a request's time went to Flask's request
machinery: the request context, URL matching, the after-request hooks. :class:`LeanDataPath`
sits in front of the Flask app (as its ``wsgi_app``) and answers exactly those requests
itself, with the same functions the Flask views call (:func:`broker.gateway.routes.data_answer`
and :func:`~broker.gateway.routes.decision_answer`), so both paths refuse and serve alike:

- the same refusal bodies (:func:`broker.web.errors.error_answer`), a BrokerError escaping the
  gateway (a store outage) answered as the app's error handler does, anything else a logged
  500 that says nothing of the cause;
- the same response headers: the app's security headers (``finish``), CORS on the data route;
- the same metrics (``gateway_requests_total`` by endpoint, method and status).

Everything else (other methods, CORS preflights, every other path, a request under a
``SCRIPT_NAME``) goes to the Flask app unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Response
from werkzeug.datastructures import EnvironHeaders

from broker.errors import BrokerError
from broker.gateway.routes import DATA_PREFIX, DECISION_PATH, data_answer, decision_answer
from broker.gateway.service import Gateway, Refusal
from broker.web.errors import error_answer, internal_error

log = logging.getLogger("broker.gateway")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class LeanDataPath:
    """WSGI middleware: the data routes' GET/HEAD answered directly (module docstring), the rest by ``app``."""

    def __init__(self, app: WSGIApp, gateway: Gateway, realm: str, finish: Callable[[Response], object]) -> None:
        self.app = app
        self.gateway = gateway
        self.realm = realm
        self.finish = finish

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO", "")
        if method not in ("GET", "HEAD") or environ.get("SCRIPT_NAME"):
            return self.app(environ, start_response)
        if path.startswith(DATA_PREFIX):
            endpoint = "data"
        elif path == DECISION_PATH:
            endpoint = "decision"
        elif path.startswith(DECISION_PATH + "/"):
            endpoint = "decision_path"
        else:
            return self.app(environ, start_response)
        headers = EnvironHeaders(environ)
        try:
            if endpoint == "data":
                response = data_answer(self.gateway, method, headers, environ, self._refused)
            else:
                response = decision_answer(self.gateway, method, headers, environ)
        except BrokerError as exc:
            if exc.status >= 500:
                log.warning("%s (%s): %s", exc.code, exc.status, exc.message)
            response = error_answer(exc, self.realm)
        except Exception:
            log.exception("unhandled error on %s %s", method, path)
            response = error_answer(internal_error(), self.realm)
        self.gateway.metrics.requests.inc(endpoint, method, str(response.status_code))
        self.finish(response)
        body = response.response
        if (
            method == "GET"
            and response.direct_passthrough
            and isinstance(body, list)
            and "Content-Length" in response.headers
        ):
            # A small body read at once, its length declared (the many small Range reads): what
            # werkzeug's Response.__call__ would hand the server, without its generic header pass.
            start_response(response.status, response.headers.to_wsgi_list())
            return body
        return response(environ, start_response)

    def _refused(self, refusal: Refusal) -> Response:
        return error_answer(refusal, self.realm)
