"""Running the WSGI app: gunicorn in production, Flask's server for development.

Shared state (keys, store schema) is prepared once in the master before workers fork,
so N workers never race to generate the first key.
"""

from __future__ import annotations

import logging
from typing import Any

from broker.cli import CommandError
from broker.settings import Settings

log = logging.getLogger("broker.cli.serve")


def _prepare(settings: Settings) -> None:
    """Create the data directory, the store schema and the first key, once."""
    from broker.keys.ring import KeyRing
    from broker.store import open_store

    settings.data_path.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    try:
        health = store.health()
        for warning in health.warnings:
            log.warning("store: %s", warning)
        if not health.ok:
            raise CommandError(
                f"the {health.backend} store is not fit for security state: "
                + ("; ".join(health.warnings) or "unhealthy"),
                1,
            )
        KeyRing.open(
            settings.keys, settings.keys_path, store.kernel, leeway_seconds=settings.limits.clock_leeway_seconds
        ).maintain()
    finally:
        store.close()


def run_dev(settings: Settings, bind: str) -> int:
    from broker.app import create_app, start_background

    _prepare(settings)
    host, _, port = bind.rpartition(":")
    app = create_app(settings)
    start_background(app)
    app.run(host=host or "127.0.0.1", port=int(port), threaded=True, use_reloader=False)
    return 0


def run_gunicorn(settings: Settings, bind: str, workers: int) -> int:
    from gunicorn.app.base import BaseApplication

    _prepare(settings)

    class BrokerApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": bind,
                "workers": workers,
                "threads": settings.server.threads,
                "worker_class": "gthread" if settings.server.threads > 1 else "sync",
                "timeout": settings.server.timeout_seconds,
                # Long authorization requests (state, PKCE, resource lists) must not hit 414.
                "limit_request_line": 8190,
                "limit_request_field_size": settings.server.max_header_bytes,
                "accesslog": "-",
                "loglevel": settings.log_level.lower(),
                # Never log query strings or headers that may carry tokens.
                "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms',
            }
            for key, value in options.items():
                self.cfg.set(key, value)
            # gunicorn >= 25.1 opens a control socket at one per-user path: two brokers on one host
            # would take each other's. We use none.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            from broker.app import create_app, start_background

            app = create_app(settings)
            start_background(app)
            return app

    BrokerApplication().run()
    return 0
