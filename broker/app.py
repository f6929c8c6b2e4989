"""The Flask app factory: wires settings, store, key ring and the web-facing parts.

``create_app`` is the only place that builds a process's parts; importing any module
of the broker starts nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from broker.config import Settings, load_settings
from broker.errors import ApiError
from broker.runtime import Runtime, current_runtime
from broker.store.base import StoreUnavailable

log = logging.getLogger("broker.app")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# JSON endpoints render nothing; pages get their own, stricter-than-default policy.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the broker's WSGI app from settings (embedded defaults when None)."""
    from broker.keys.ring import KeyRing
    from broker.store import open_store

    settings = settings or load_settings()
    app = Flask("broker")
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if runtime is None:
        store = open_store(settings)
        keyring = KeyRing.open(settings, store)
        runtime = Runtime(settings=settings, store=store, keyring=keyring)
    app.extensions["broker"] = runtime

    _install_error_handlers(app)
    _install_security_headers(app, https=settings.issuer.startswith("https://"))
    _install_health_routes(app)
    _install_oidc(app)
    _install_dac(app)
    return app


def _install_dac(app: Flask) -> None:
    """DAC REST API, permissions API and pages (broker/dac)."""
    from broker.dac.api import init_app

    init_app(app, on_revoke=current_runtime_of(app).revoked)


def current_runtime_of(app: Flask) -> Runtime:
    """The Runtime ``create_app`` put in ``app``; usable outside a request."""
    return app.extensions["broker"]


def _install_oidc(app: Flask) -> None:
    """The OpenID Provider and the login pages (broker/oidc, broker/login)."""
    from broker.login.views import blueprint as login_blueprint
    from broker.oidc.views import blueprint as oidc_blueprint

    app.register_blueprint(oidc_blueprint())
    app.register_blueprint(login_blueprint())


def _install_health_routes(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> Any:
        """Liveness: the process answers."""
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Any:
        """Readiness: the store answers and a signing key is loaded."""
        rt = current_runtime()
        checks: dict[str, Any] = {}
        try:
            health = rt.store.health()
            checks["store"] = {"ok": health.ok, "backend": health.backend, "warnings": health.warnings}
        except StoreUnavailable:
            checks["store"] = {"ok": False, "backend": rt.store.backend}
        try:
            checks["keys"] = {"ok": rt.keyring.signing_key() is not None}
        except Exception:  # a broken key ring is "not ready", with the reason in the log
            log.exception("key ring not ready")
            checks["keys"] = {"ok": False}
        ready = all(c["ok"] for c in checks.values())
        return jsonify(status="ready" if ready else "not_ready", checks=checks), (200 if ready else 503)

    @app.get("/.well-known/jwks.json")
    def jwks() -> Any:
        """Every public key that may still verify a live token of ours (RFC 7517)."""
        response = jsonify(current_runtime().keyring.jwks())
        response.headers["Cache-Control"] = "public, max-age=300"
        return response


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        response = jsonify(exc.body())
        response.status_code = exc.status
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(StoreUnavailable)
    def store_down(exc: StoreUnavailable) -> Any:
        log.warning("store unavailable: %s", exc)
        response = jsonify(
            error="store_unavailable", message="The broker's store cannot be reached; try again shortly."
        )
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = jsonify(error=code, message=exc.description or exc.name)
        response.status_code = exc.code or 500
        passed = dict(exc.get_headers())
        for name in ("Allow", "WWW-Authenticate"):
            if name in passed:
                response.headers[name] = passed[name]
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify(error="internal_error", message="The broker failed to handle this request."), 500


def _install_security_headers(app: Flask, https: bool) -> None:
    @app.after_request
    def add_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", API_CSP)
        if https:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
