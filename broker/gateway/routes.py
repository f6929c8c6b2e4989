"""HTTP routes of the gateway: the streaming route, the decision endpoint, metrics.

- ``GET``/``HEAD /data/<dataset>/<path>``: authorise, then stream (or offload to nginx);
  ``OPTIONS`` answers CORS preflights for allow-listed origins only (PX-19); every
  other method is 405 with ``Allow`` from the router, never forwarded (PX-22).
- ``/gateway/decision`` (nginx ``auth_request``: original request in ``X-Original-URI`` and
  ``X-Original-Method``) and ``/gateway/decision/<original path>`` (Envoy ``ext_authz``
  HTTP mode with ``path_prefix``): the original request's headers come along (nginx forwards
  them to ``auth_request``), so its ``Authorization`` and ``GA4GH-Purpose`` decide; 200 with identity headers, 401 with
  ``WWW-Authenticate``, 403 with ``X-Auth-Reason``; no body. A request the data route
  would refuse as malformed is a 403 here, since ``auth_request`` knows only 2xx/401/403.
- ``GET /metrics``: Prometheus text.

Routing never normalises: ``merge_slashes`` is off and the view reads the raw request
target itself (:func:`raw_target`), so ``//`` and encoded separators reach the path
rules instead of being "helpfully" redirected or decoded away.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request
from werkzeug.routing import PathConverter

from broker.gateway.metrics import CONTENT_TYPE
from broker.gateway.service import Gateway, HeaderLookup, Refusal, identity_header
from broker.web.errors import error_response
from broker.web.proxies import direct_loopback

DATA_PREFIX = "/data/"
DECISION_PATH = "/gateway/decision"
DECISION_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
# The request headers a browser may send cross-origin: credentials, ranges, the declared purpose.
CORS_REQUEST_HEADERS = frozenset({"authorization", "range", "ga4gh-purpose"})
CORS_EXPOSED = "Content-Range, Content-Length, Accept-Ranges, ETag, Last-Modified"


class AnyPathConverter(PathConverter):
    """Like ``path`` but also matches an empty string or one starting with '/' (so '//' routes)."""

    regex = r"[\s\S]*"  # any characters, newlines included
    part_isolating = False  # Werkzeug would infer True from a regex without '/'


def raw_target(environ: dict[str, Any]) -> str:
    """The request target as the client sent it (before any decoding), without SCRIPT_NAME.

    gunicorn gives ``RAW_URI``, Werkzeug's server ``REQUEST_URI``/``RAW_URI``. For a server
    giving neither, the decoded ``PATH_INFO`` is re-encoded: the path rules then see every
    '%' it contained as a literal '%' and refuse it, so no second decode can happen.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    script = environ.get("SCRIPT_NAME", "")
    if raw is None:
        path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/!$&'()*+,;=:@~-._")
        query = environ.get("QUERY_STRING", "")
        raw = script + path + (f"?{query}" if query else "")
    if script and raw.startswith(script + "/"):
        raw = raw[len(script) :]
    return str(raw)


def make_blueprint(gw: Gateway) -> Blueprint:
    """The gateway's routes, deciding and serving with ``gw`` (its own services, never a global)."""
    metrics_enabled = gw.settings.metrics
    bp = Blueprint("gateway", __name__)

    @bp.route("/data/<anypath:_rest>", methods=["GET", "HEAD", "OPTIONS"], merge_slashes=False)
    def data(_rest: str) -> Response:
        """Authorise, then serve the object's bytes (stream or offload)."""
        if request.method == "OPTIONS":
            return _preflight(gw)
        return data_answer(gw, request.method, request.headers, request.environ, error_response)

    def decision_view(_rest: str | None = None) -> Response:
        """nginx auth_request / Envoy ext_authz: the verdict only, as status and headers."""
        return decision_answer(gw, request.method, request.headers, request.environ)

    bp.add_url_rule(DECISION_PATH, "decision", decision_view, methods=DECISION_METHODS, merge_slashes=False)
    bp.add_url_rule(
        DECISION_PATH + "/<anypath:_rest>",
        "decision_path",
        decision_view,
        methods=DECISION_METHODS,
        merge_slashes=False,
    )

    if metrics_enabled:

        @bp.get("/metrics")
        def metrics() -> Response:
            """Prometheus text exposition of this process's gateway metrics.

            It names datasets, deny reasons and traffic, so it is not public: with
            ``gateway.metrics_token`` set, a scraper sends it as a Bearer token; without it,
            only loopback peers are answered (a same-host Prometheus or sidecar), and never a
            request a proxy forwarded, trusted or not (issue 11 item 3).
            """
            secret = gw.settings.metrics_token
            token = secret.get_secret_value() if secret is not None else None
            if token is not None:
                supplied = request.headers.get("Authorization", "").encode("utf-8", "replace")
                if not hmac.compare_digest(supplied, f"Bearer {token}".encode()):
                    refused = jsonify(error="invalid_token", message="Metrics need the configured bearer token.")
                    refused.status_code = 401
                    refused.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
                    return refused
            elif not direct_loopback(request):
                refused = jsonify(error="not_found", message="The requested URL was not found on the server.")
                refused.status_code = 404
                return refused
            response = Response(gw.metrics.render(), mimetype="text/plain")
            response.headers["Content-Type"] = CONTENT_TYPE
            response.headers["Cache-Control"] = "no-store"
            return response

    @bp.after_request
    def count(response: Response) -> Response:
        endpoint = (request.endpoint or "").rpartition(".")[2]
        gw.metrics.requests.inc(endpoint, request.method, str(response.status_code))
        return response

    return bp


def data_answer(
    gw: Gateway,
    method: str,
    headers: HeaderLookup,
    environ: dict[str, Any],
    refused: Callable[[Refusal], Response],
) -> Response:
    """The data route's answer to a GET or HEAD: authorise, then the object's bytes (stream or offload).

    Shared by the Flask view and the lean path (:mod:`broker.gateway.lean`); ``refused`` renders a
    refusal (:func:`broker.web.errors.error_response` or its request-free twin).
    """
    try:
        target, decision = gw.decide(method, raw_target(environ), headers, DATA_PREFIX, "data")
        response = gw.serve(method, target.ref, headers, environ, decision, target.query)
    except Refusal as refusal:
        response = refused(refusal)
    _cors(gw, response, headers)
    return response


def decision_answer(gw: Gateway, method: str, headers: HeaderLookup, environ: dict[str, Any]) -> Response:
    """The decision endpoint's answer (nginx auth_request / Envoy ext_authz): status and headers only."""
    original = headers.get("X-Original-URI")
    if original is None:
        own = raw_target(environ)
        original = own[len(DECISION_PATH) :] if own.startswith(DECISION_PATH + "/") else ""
    method = headers.get("X-Original-Method") or method
    response = Response(b"", status=200)
    response.headers["Cache-Control"] = "no-store"
    if method not in ("GET", "HEAD"):
        response.status_code = 403
        response.headers["X-Auth-Reason"] = "method_not_allowed"
        return response
    try:
        target, verdict = gw.decide(method, original, headers, gw.settings.decision_prefix, "decision")
    except Refusal as refusal:
        response.status_code = refusal.status if refusal.status in (401, 403, 503) else 403
        response.headers["X-Auth-Reason"] = refusal.code
        for name in ("WWW-Authenticate", "Retry-After"):
            if name in refusal.headers:
                response.headers[name] = refusal.headers[name]
        return response
    response.headers["X-Auth-Reason"] = verdict.reason
    response.headers["X-Auth-Dataset"] = identity_header(target.ref.dataset)
    response.headers["X-Auth-Object"] = identity_header(target.ref.path)
    if verdict.subject is not None:
        response.headers["X-Auth-Subject"] = identity_header(verdict.subject)
    if verdict.expires_at is not None:
        response.headers["X-Auth-Expires"] = str(verdict.expires_at)
    return response


def _preflight(gw: Gateway) -> Response:
    """CORS preflight (PX-19): exact allow-listed origins, GET/HEAD, Authorization, Range and GA4GH-Purpose only."""
    origin = request.headers.get("Origin")
    response = Response(b"", status=204)
    response.headers["Allow"] = "GET, HEAD, OPTIONS"
    if origin is None:
        return response
    method = request.headers.get("Access-Control-Request-Method", "")
    asked = {
        h.strip().lower() for h in request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()
    }
    if origin not in gw.settings.cors_origins or method not in ("GET", "HEAD") or not asked <= CORS_REQUEST_HEADERS:
        response.status_code = 403
        response.headers["Vary"] = "Origin"
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Methods"] = "GET, HEAD"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Range, GA4GH-Purpose"
    response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Vary"] = "Origin"
    return response


def _cors(gw: Gateway, response: Response, headers: HeaderLookup) -> None:
    if not gw.settings.cors_origins:
        return
    response.headers.add("Vary", "Origin")
    origin = headers.get("Origin")
    if origin is not None and origin in gw.settings.cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
