"""``ga4gh-broker serve``: granian in production (:mod:`broker.serve`), Flask's server with ``--dev``.

Shared state (keys, store schema) is prepared once in the master before workers fork, so N
workers never race to generate the first key. Both servers log through :mod:`broker.serve.logs`
(no credential in any line) and serve the app inside :class:`broker.serve.middleware.ServeMiddleware`.
"""

from __future__ import annotations

import argparse
from typing import Any

from werkzeug.serving import WSGIRequestHandler

from broker.cli.context import CommandError, Context
from broker.serve.logs import configure
from broker.serve.middleware import ServeMiddleware
from broker.serve.production import StartError, build_app, claim_sqlite, prepare, run, split_bind, warm_health
from broker.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the broker (granian workers; --dev for Flask's server)")
    serve.add_argument("--dev", action="store_true", help="Flask development server, one process")
    serve.add_argument("--bind", default=None, help="HOST:PORT, overrides server.bind")
    serve.add_argument("--workers", type=int, default=None, help="overrides server.workers")
    serve.set_defaults(handler=_serve)


def _serve(ctx: Context) -> int:
    settings = ctx.settings
    bind = ctx.args.bind or settings.server.bind
    if ctx.args.dev:
        return run_dev(settings, bind)
    return run_production(settings, bind, ctx.args.workers or settings.server.workers)


class _RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, logging the path without its query string (codes and signatures travel there)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s %s" %s %s', self.command, path, self.request_version, code, size)


def run_production(settings: Settings, bind: str, workers: int) -> int:
    """Serve with granian until SIGTERM (see :mod:`broker.serve.production`)."""
    try:
        return run(settings, bind, workers)
    except StartError as exc:
        raise CommandError(str(exc), 1) from None


def run_dev(settings: Settings, bind: str) -> int:
    """Flask's development server: one process, threads, no header deadlines; never on a network."""
    try:
        host, port = split_bind(bind)
        configure(settings.log_level)
        held = claim_sqlite(settings)
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
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False, request_handler=_RequestHandler)
    finally:
        if held is not None:
            held.close()
    return 0
