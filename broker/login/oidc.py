"""The ``oidc`` connector: log in at an upstream OpenID Provider (placeholder until built)."""

from __future__ import annotations

from flask import Response

from broker.web.pages import error_page


def start(connector_id: str) -> Response:
    return error_page("Not available", "Upstream login is not available yet.", 501)


def callback(connector_id: str) -> Response:
    return error_page("Not available", "Upstream login is not available yet.", 501)
