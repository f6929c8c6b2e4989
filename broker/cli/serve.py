"""``ga4gh-broker serve``: granian in production (:mod:`broker.serve`), Flask's server with ``--dev``.

Shared state (keys, store schema) is prepared once in the master before workers fork, so N
workers never race to generate the first key. Both servers log through :mod:`broker.serve.logs`
(no credential in any line) and serve the app inside :class:`broker.serve.middleware.ServeMiddleware`.
"""

from __future__ import annotations

from typing import Any

from broker.cli import CommandError
from broker.serve.production import StartError
from broker.settings import Settings


def run_production(settings: Settings, bind: str, workers: int) -> int:
    """Serve with granian until SIGTERM (see :mod:`broker.serve.production`)."""
    from broker.serve.production import run

    try:
        return run(settings, bind, workers)
    except StartError as exc:
        raise CommandError(str(exc), 1) from None


def run_dev(settings: Settings, bind: str) -> int:
    """Flask's development server: one process, threads, no header deadlines; never on a network."""
    from werkzeug.serving import WSGIRequestHandler

    from broker.serve.logs import configure
    from broker.serve.middleware import ServeMiddleware
    from broker.serve.production import build_app, prepare, split_bind, warm_health

    class RequestHandler(WSGIRequestHandler):
        """Werkzeug's handler, logging the path without its query string (codes and signatures travel there)."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            path = self.path.split("?", 1)[0]
            self.log("info", '"%s %s %s" %s %s', self.command, path, self.request_version, code, size)

    try:
        host, port = split_bind(bind)
        configure(settings.log_level)
        prepare(settings)
    except StartError as exc:
        raise CommandError(str(exc), 1) from None
    app = build_app(settings)
    warm_health(app)
    wrapped: Any = ServeMiddleware(
        app.wsgi_app,
        store_deadline_seconds=settings.server.store_deadline_seconds,
        stream_limit=settings.server.stream_limit,
    )
    app.wsgi_app = wrapped  # type: ignore[method-assign]
    app.run(host=host, port=port, threaded=True, use_reloader=False, request_handler=RequestHandler)
    return 0
