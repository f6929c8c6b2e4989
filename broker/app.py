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
from broker.gateway.lean import LeanDataPath
from broker.gateway.wiring import register as register_gateway
from broker.login.web import login_blueprint
from broker.oidc.web import oidc_blueprint
from broker.web import errors as web_errors
from broker.web.health import install_health_routes
from broker.web.home import home_blueprint
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
    app = Flask("broker", static_folder="web/static")  # the one stylesheet of the pages
    app.jinja_env.globals["site"] = settings.site
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[CONTAINER_EXTENSION] = container
    web_errors.install(app, settings.issuer)
    _install_security_headers(app, https=settings.issuer.startswith("https://"))
    install_health_routes(app, container.health)
    app.register_blueprint(home_blueprint(settings.issuer))
    app.register_blueprint(oidc_blueprint(container.op))
    app.register_blueprint(login_blueprint(container.login))
    app.register_blueprint(api_blueprint(container.dac_web))
    app.register_blueprint(pages_blueprint(container.dac_web))
    register_gateway(app, container.gateway)
    https = settings.issuer.startswith("https://")
    # The data routes' GET/HEAD skip Flask's request machinery (same answers; broker.gateway.lean);
    # the trusted-proxy rewrite sits outside it, so every path sees the real client address.
    lean: Any = LeanDataPath(
        app.wsgi_app, container.gateway, settings.issuer, lambda response: add_security_headers(response, https)
    )
    app.wsgi_app = TrustedProxies(lean, settings.server.trusted_proxies)  # type: ignore[method-assign]
    return app


def container_of(app: Flask) -> Container:
    """The container ``create_app`` was given (for the command line and tests; views get their services)."""
    found: Container = app.extensions[CONTAINER_EXTENSION]
    return found


def add_security_headers(response: Response, https: bool) -> Response:
    """The headers every answer carries (each only where the view did not set its own)."""
    headers = response.headers
    present = {name.lower() for name in headers.keys()}  # noqa: SIM118 - werkzeug Headers iterate as pairs
    for name, value in _HTTPS_HEADERS if https else _HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    return response


_HEADERS = (*SECURITY_HEADERS.items(), ("Content-Security-Policy", API_CSP))
_HTTPS_HEADERS = (*_HEADERS, ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))


def _install_security_headers(app: Flask, https: bool) -> None:
    @app.after_request
    def add_headers(response: Response) -> Response:
        return add_security_headers(response, https)
