"""``ga4gh-broker serve``: the broker on granian, in worker processes, bound straight to the network.

See :mod:`broker.serve` for why granian. What this module sets, and why:

- ``http1_settings.header_read_timeout`` = ``server.header_timeout_seconds``: a connection that has
  not sent a whole request head by then (slowloris, or an idle keep-alive connection) is closed.
- ``backpressure`` = ``server.max_connections`` per worker: connections being read cost no thread,
  so this is set high; past it, new connections wait in the kernel's listen backlog.
- ``blocking_threads`` = ``server.threads``: the Python threads that run requests.
- HTTP/1 only (``http=1``): the broker speaks HTTP/1.1 to its clients and proxies.
- Workers that crash are started again (``respawn_failed_workers``); a worker asked to stop is
  killed after ``server.timeout_seconds``; each worker dies with the master
  (:mod:`broker.serve.parent`).
- Logging is :mod:`broker.serve.logs` in the master and every worker; the access log writes the
  method, the path without its query string, the status and the time, never a header.

The app each worker serves is built in the worker (after the fork) by :func:`build_app`, and
wrapped in :class:`~broker.serve.middleware.ServeMiddleware`.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from flask import Flask
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server

from broker.app import create_app
from broker.container import Container
from broker.errors import StartupError
from broker.keys.pepper import load_pepper
from broker.keys.ring import KeyRing
from broker.oidc.clients import ClientRegistry, pkce_relaxations
from broker.oidc.repository import OidcRepository
from broker.serve.logs import configure, logging_config
from broker.serve.middleware import ServeMiddleware
from broker.serve.parent import die_with_parent
from broker.settings import Settings
from broker.store import open_kernel
from broker.web.health import HEALTH_EXTENSION

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("broker.serve")

#: The access log line: never the query string (codes, signatures, user codes travel there), never a header.
ACCESS_LOG_FORMAT = '%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1fms'
#: hyper's read buffer must hold the whole head; this much on top of ``max_header_bytes``.
HEAD_BUFFER_EXTRA_BYTES = 16 * 1024


class StartError(StartupError):
    """``serve`` cannot start: a bad bind address, or a store not fit for security state."""

    code = "cannot_start"


class BindError(StartError):
    """``server.bind`` is not HOST:PORT."""

    code = "bad_bind"


def split_bind(bind: str) -> tuple[str, int]:
    """``("127.0.0.1", 8080)`` from ``"127.0.0.1:8080"`` (``[::1]:8080`` for IPv6); BindError otherwise."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise BindError(f"expected HOST:PORT to listen on, got {bind!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class StoreInUse(StartError):
    """Another ``serve`` already uses this SQLite file."""

    code = "store_in_use"


def claim_sqlite(settings: Settings) -> IO[bytes] | None:
    """Refuse to start a second ``serve`` on one SQLite file (issue 11 item 9); the open lock file, held while serving.

    Two servers on one SQLite file would each keep per-process state (rate-limit windows are
    shared, but the key ring's reload, the revocation watcher and the write lock are tuned for the
    workers of one server) and contend for the file's single writer; it is not a supported
    deployment. The lock is an exclusive ``flock`` on ``<file>.serve-lock``, released by the
    kernel when the process ends however it ends, so a crash never leaves a stale lock. Several
    servers share a Redis or PostgreSQL store instead. None for those backends.
    """
    if settings.store.backend != "sqlite":
        return None
    path = Path(str(settings.sqlite_path) + ".serve-lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab")  # noqa: SIM115 - held open for the life of the server, on purpose
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreInUse(
            f"another ga4gh-broker serve already uses the SQLite store {settings.sqlite_path}; run one serve per "
            "SQLite file (raise --workers), or use Redis or PostgreSQL for several servers"
        ) from None
    return handle


def prepare(settings: Settings) -> None:
    """Create the data directory, the store schema and the first key, once, before any worker starts.

    Logs, once, every client an operator let skip PKCE (THREAT-MODEL OA-05).

    N workers must never race to generate the first key; a store that is not fit for security
    state stops the start (:class:`StartError`).
    """
    settings.data_path.mkdir(parents=True, exist_ok=True)
    store = open_kernel(settings.store, settings.sqlite_path)
    try:
        health = store.health()
        for warning in health.warnings:
            log.warning("store: %s", warning)
        if not health.ok:
            raise StartError(
                f"the {health.backend} store is not fit for security state: "
                + ("; ".join(health.warnings) or "unhealthy")
            )
        KeyRing.open(
            settings.keys, settings.keys_path, store, leeway_seconds=settings.limits.clock_leeway_seconds
        ).maintain()
        load_pepper(settings.keys, settings.keys_path)  # made here once, not raced for by the workers
        registry = ClientRegistry(settings.oidc.clients, OidcRepository(store, family_marker_seconds=3600))
        for line in pkce_relaxations(registry.declared() + registry.stored(), settings.oidc.require_pkce):
            log.warning("%s", line)
    finally:
        store.close()


def build_app(settings: Settings) -> Flask:
    """The broker's Flask app over a new :class:`~broker.container.Container` (its store kernel wrapped
    in a :class:`~broker.store.deadline.DeadlineKernel`), with the container's background work started."""
    container = Container.build(settings)
    container.start_background()
    return create_app(container)


def warm_health(app: Flask) -> None:
    """Build the JWKS in the background now, so the first request of this process does not wait for it."""
    routes = app.extensions.get(HEALTH_EXTENSION)
    if routes is not None:
        routes.warm()


def wsgi_app(settings: Settings) -> ServeMiddleware:
    """What a worker serves: the app with its background work started, in :class:`ServeMiddleware`."""
    app = build_app(settings)
    warm_health(app)
    return ServeMiddleware(
        app, store_deadline_seconds=settings.server.store_deadline_seconds, stream_limit=settings.server.stream_limit
    )


def run(settings: Settings, bind: str, workers: int) -> int:
    """Serve until SIGTERM or SIGINT (granian's master in this process, ``workers`` worker processes)."""

    host, port = split_bind(bind)
    configure(settings.log_level)
    held = claim_sqlite(settings)  # kept until this function returns: the server's whole life
    prepare(settings)
    master = os.getpid()
    server_settings = settings.server

    def loader(_target: str) -> Any:
        die_with_parent(master)
        return wsgi_app(settings)

    granian_level = LogLevels.warning if settings.log_level in ("WARNING", "ERROR") else LogLevels.info
    server = Server(
        "broker",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=server_settings.threads,
        backpressure=server_settings.max_connections,
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(server_settings.header_timeout_seconds * 1000),
            max_buffer_size=max(8192, server_settings.max_header_bytes + HEAD_BUFFER_EXTRA_BYTES),
        ),
        websockets=False,
        log_enabled=True,
        log_level=granian_level,
        log_dictconfig=logging_config(settings.log_level),
        log_access=True,
        log_access_format=ACCESS_LOG_FORMAT,
        respawn_failed_workers=True,
        workers_kill_timeout=server_settings.timeout_seconds,
    )
    log.info("serving on %s:%d with %d workers x %d threads (granian)", host, port, workers, server_settings.threads)
    try:
        server.serve(target_loader=loader)
    finally:
        if held is not None:
            held.close()
    return 0
