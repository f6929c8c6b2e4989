"""Building the gateway and putting its routes on an app: the gateway area's composition.

Kept out of ``broker/gateway/__init__.py`` so that importing any gateway module (the path
rules, the htsget core, the Crypt4GH core) does not import every other one, and so that no
gateway module reaches its siblings through the package (which made import cycles).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask

from broker.gateway.authorize import Authorizer
from broker.gateway.drs import make_drs_blueprint
from broker.gateway.htsget_routes import make_htsget_blueprint
from broker.gateway.htsget_service import HtsgetService
from broker.gateway.metrics import GatewayMetrics
from broker.gateway.routes import AnyPathConverter, make_blueprint
from broker.gateway.service import AuditEvent, Gateway
from broker.gateway.settings import GatewaySettings

__all__ = ["build_gateway", "init_app", "register"]


def build_gateway(
    authorizer: Authorizer,
    settings: GatewaySettings,
    *,
    data_dir: str | Path | None = None,
    audit: Callable[[AuditEvent], None] | None = None,
    metrics: GatewayMetrics | None = None,
    apply_url: Callable[[str], str | None] | None = None,
) -> Gateway:
    """The gateway deciding with ``authorizer``.

    ``data_dir`` keeps the URL-signing key and the checksum cache (shared by every process on
    the machine); ``audit`` receives every decision and finished transfer.
    """
    return Gateway(
        settings=settings,
        authorizer=authorizer,
        data_dir=Path(data_dir) if data_dir else None,
        metrics=metrics or GatewayMetrics(),
        audit=audit,
        apply_url=apply_url,
    )


def register(app: Flask, gateway: Gateway) -> None:
    """Register the gateway's routes (data, decision, DRS, metrics) on ``app``, served by ``gateway``."""
    app.extensions["gateway"] = gateway  # for tests that inspect it; views get it from their blueprint
    app.url_map.converters.setdefault("anypath", AnyPathConverter)
    app.register_blueprint(make_blueprint(gateway))
    app.register_blueprint(make_drs_blueprint(gateway))
    app.register_blueprint(make_htsget_blueprint(gateway, HtsgetService(gateway)))


def init_app(
    app: Flask,
    authorizer: Authorizer,
    settings: GatewaySettings,
    *,
    data_dir: str | Path | None = None,
    audit: Callable[[AuditEvent], None] | None = None,
    metrics: GatewayMetrics | None = None,
) -> Gateway:
    """:func:`build_gateway` and :func:`register` in one step (a gateway on its own, as its tests run it)."""
    gateway = build_gateway(authorizer, settings, data_dir=data_dir, audit=audit, metrics=metrics)
    register(app, gateway)
    return gateway
