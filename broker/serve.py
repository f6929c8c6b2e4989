"""Running the WSGI app: gunicorn in production, Flask's server for development.

Shared state (keys, store schema) is prepared once in the master before workers fork,
so N workers never race to generate the first key.
"""

from __future__ import annotations

from typing import Any

from broker.config import Settings


def _prepare(settings: Settings) -> None:
    """Create the data directory, the store schema and the first key, once."""
    from broker.keys.ring import KeyRing
    from broker.store import open_store

    settings.data_path.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    try:
        KeyRing.open(settings, store).maintain()
    finally:
        store.close()


def run_dev(settings: Settings, bind: str) -> int:
    from broker.app import create_app

    _prepare(settings)
    host, _, port = bind.rpartition(":")
    create_app(settings).run(host=host or "127.0.0.1", port=int(port), threaded=True, use_reloader=False)
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
                "accesslog": "-",
                "loglevel": settings.log_level.lower(),
                # Never log query strings or headers that may carry tokens.
                "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms',
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from broker.app import create_app

            return create_app(settings)

    BrokerApplication().run()
    return 0
