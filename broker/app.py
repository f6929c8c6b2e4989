"""The Flask app factory: one container of services in, one WSGI app out.

``create_app`` registers each area's blueprints with that area's own services, taken from
the container (:mod:`broker.container`), plus the one error handler and the security headers
every answer carries. It builds nothing itself and importing it starts nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response

from broker.container import Container
from broker.dac.web import api_blueprint, pages_blueprint
from broker.gateway import register as register_gateway
from broker.login.web import login_blueprint
from broker.oidc.web import oidc_blueprint
from broker.web import errors as web_errors
from broker.web.health import install_health_routes
from broker.web.proxies import TrustedProxies

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# JSON endpoints render nothing; pages get their own, stricter-than-default policy.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: The largest request body any route reads (a CSV import is the largest: 2 MiB).
MAX_CONTENT_LENGTH = 2 * 1024 * 1024
#: Where the container is kept on the app, for the command line and tests (views never read it).
CONTAINER_EXTENSION = "broker.container"


def create_app(container: Container) -> Flask:
    """The broker's WSGI app over ``container``'s services."""
    settings = container.settings
    app = Flask("broker")
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[CONTAINER_EXTENSION] = container
    web_errors.install(app, settings.issuer)
    _install_security_headers(app, https=settings.issuer.startswith("https://"))
    install_health_routes(app, container.health)
    app.register_blueprint(oidc_blueprint(container.op))
    app.register_blueprint(login_blueprint(container.login))
    app.register_blueprint(api_blueprint(container.dac_web))
    app.register_blueprint(pages_blueprint(container.dac_web))
    register_gateway(app, container.gateway)
    wrapped: Any = TrustedProxies(app.wsgi_app, settings.server.trusted_proxies)
    app.wsgi_app = wrapped  # type: ignore[method-assign]
    return app


def container_of(app: Flask) -> Container:
    """The container ``create_app`` was given (for the command line and tests; views get their services)."""
    found: Container = app.extensions[CONTAINER_EXTENSION]
    return found


def _install_security_headers(app: Flask, https: bool) -> None:
    @app.after_request
    def add_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", API_CSP)
        if https:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
