"""The OpenID Provider blueprint: every OP route and its error handlers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from broker.oidc import authorize, device, endpoints, logout
from broker.oidc.discovery import metadata
from broker.runtime import current_runtime


def _discovery() -> Any:
    response = jsonify(metadata(current_runtime().settings))
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def blueprint() -> Blueprint:
    """Build the OP blueprint (a new object per app, nothing at import time)."""
    bp = Blueprint("oidc", __name__, template_folder="../web/templates")
    bp.add_url_rule("/.well-known/openid-configuration", endpoint="discovery", view_func=_discovery, methods=["GET"])
    bp.add_url_rule("/authorize", view_func=authorize.authorize, methods=["GET", "POST"])
    bp.add_url_rule(
        "/authorize/continue",
        endpoint="continue_authorization",
        view_func=authorize.continue_authorization,
        methods=["GET"],
    )
    bp.add_url_rule("/consent", view_func=authorize.consent, methods=["GET", "POST"])
    bp.add_url_rule("/token", view_func=endpoints.token, methods=["POST"])
    bp.add_url_rule("/userinfo", view_func=endpoints.userinfo, methods=["GET", "POST"])
    bp.add_url_rule("/introspect", view_func=endpoints.introspect, methods=["POST"])
    bp.add_url_rule("/revoke", view_func=endpoints.revoke, methods=["POST"])
    bp.add_url_rule("/logout", view_func=logout.logout, methods=["GET", "POST"])
    bp.add_url_rule("/device_authorization", view_func=device.device_authorization, methods=["POST"])
    bp.add_url_rule("/device", endpoint="device_verify", view_func=device.device_verify, methods=["GET", "POST"])
    return bp
