"""The data gateway: the enforcement point in front of dataset files.

Modes, all from one decision (:mod:`broker.gateway.service`): ``stream`` (the gateway
sends the bytes), ``offload`` (``X-Accel-Redirect`` to nginx), the decision endpoint for
nginx ``auth_request`` / Envoy ``ext_authz``, and DRS 1.2 with signed URLs.

Importing this package starts nothing and stays light; the web parts are imported by
:func:`init_app`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.gateway.authorize import AccessDecision, Authorizer
from broker.gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from flask import Flask

    from broker.gateway.metrics import GatewayMetrics
    from broker.gateway.service import AuditEvent, Gateway

__all__ = ["AccessDecision", "AuditEvent", "Authorizer", "Gateway", "GatewaySettings", "init_app"]


def init_app(
    app: Flask,
    authorizer: Authorizer,
    settings: GatewaySettings,
    *,
    data_dir: str | Path | None = None,
    audit: Callable[[AuditEvent], None] | None = None,
    metrics: GatewayMetrics | None = None,
) -> Gateway:
    """Register the gateway's routes on ``app``, deciding with ``authorizer``.

    ``data_dir`` keeps the URL-signing key and the checksum cache (shared by every process
    on the machine); ``audit`` receives every decision and finished transfer.
    """
    from broker.gateway.drs import make_drs_blueprint
    from broker.gateway.metrics import GatewayMetrics
    from broker.gateway.routes import AnyPathConverter, make_blueprint
    from broker.gateway.service import Gateway

    gateway = Gateway(
        settings=settings,
        authorizer=authorizer,
        data_dir=Path(data_dir) if data_dir else None,
        metrics=metrics or GatewayMetrics(),
        audit=audit,
    )
    app.extensions["gateway"] = gateway  # for tests that inspect it; views get it from their blueprint
    app.url_map.converters.setdefault("anypath", AnyPathConverter)
    app.register_blueprint(make_blueprint(gateway))
    app.register_blueprint(make_drs_blueprint(gateway))
    return gateway


def __getattr__(name: str) -> Any:
    """``AuditEvent`` and ``Gateway`` on first use (they pull in Flask and requests)."""
    if name in ("AuditEvent", "Gateway"):
        from broker.gateway import service

        return getattr(service, name)
    raise AttributeError(name)
