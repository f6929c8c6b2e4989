"""/healthz, /readyz and /.well-known/jwks.json: answered in bounded time, whatever the store does.

- ``/healthz`` (liveness) touches nothing: the process answers, so it is alive.
- ``/.well-known/jwks.json`` is served from the last JWK Set this process built. A request never
  waits on the key ring's storage: when the document is older than ``jwks_refresh_seconds`` one
  background thread rebuilds it while requests keep getting the current one (a stalled store
  leaves the last good set in place, which is right: keys cannot change while the store that
  holds them is down). Only the very first request of a process waits for the first build, at
  most ``check_timeout_seconds``; without a set by then it answers 503.
- ``/readyz`` (readiness) runs its checks (the store's health, a signing key) on one background
  thread shared by every concurrent request, and waits for them at most ``check_timeout_seconds``:
  a check still running then means "not ready" (503, ``"timeout"``), never a request that hangs,
  and never one thread per waiting request stuck on the store.

Threads are started on demand, one at a time per document, and are daemons, so a process that
never serves these routes starts none, and a forked child builds its own. A serving process calls
:meth:`HealthRoutes.warm` once started, so its first JWKS request finds the set already built.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, jsonify

from broker.store.base import Health, StoreUnavailable

log = logging.getLogger("broker.web.health")

#: Longest a JWKS response may be cached by verifiers (seconds); never above the key ring's publish-ahead.
MAX_JWKS_AGE = 300
#: The longest a request waits for the rebuild of a stale document before it is served the last good one.
STALE_WAIT_SECONDS = 0.25


@dataclass(frozen=True)
class HealthSources:
    """What the health routes read; the composition root builds it from its services.

    ``backend``: the store's kind (named in /readyz). ``store_health``: the store's own check
    (raises StoreUnavailable when it cannot answer). ``signing_key_ready``: True when a key signs
    now. ``jwks``: our public JWK Set (may reach the key storage). ``jwks_max_age``: Cache-Control
    max-age of the JWKS response. ``check_timeout_seconds``: the longest /readyz (and a process's
    first JWKS) waits. ``jwks_refresh_seconds``: how old the served JWKS may get before a rebuild.
    """

    backend: str
    store_health: Callable[[], Health]
    signing_key_ready: Callable[[], bool]
    jwks: Callable[[], dict[str, Any]]
    jwks_max_age: int = MAX_JWKS_AGE
    check_timeout_seconds: float = 1.0
    jwks_refresh_seconds: float = 1.0


@dataclass
class _Build:
    """One run of a function on a background thread, shared by every caller that waits for it."""

    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class BackgroundValue:
    """A value computed on a background thread: callers wait for it at most a bounded time.

    :meth:`current` returns the last value without waiting and starts a rebuild when it is older
    than ``max_age`` seconds; :meth:`fresh` starts (or joins) a rebuild and waits for its result.
    At most one rebuild runs at a time.
    """

    def __init__(self, build: Callable[[], Any], name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._build = build
        self._name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._running: _Build | None = None
        self._value: Any = None
        self._built_at: float | None = None

    def _start(self) -> _Build:
        with self._lock:
            if self._running is not None:
                return self._running
            run = self._running = _Build()
        threading.Thread(target=self._run, args=(run,), name=self._name, daemon=True).start()
        return run

    def _run(self, run: _Build) -> None:
        try:
            run.value = self._build()
        except BaseException as exc:  # handed to whoever waits; the last good value stays
            run.error = exc
        with self._lock:
            if run.error is None:
                self._value, self._built_at = run.value, self._clock()
            self._running = None
        run.done.set()

    def current(self, max_age: float, wait: float) -> tuple[Any, bool]:
        """``(value, True)``: the last build, or a rebuild when it is older than ``max_age``.

        A stale value is rebuilt in the background and the caller waits for the rebuild at most
        :data:`STALE_WAIT_SECONDS` (a healthy store answers well within it, so every process serves
        the same fresh document); past that, the last good value is served, so a hung store never
        holds the answer. With no build yet, waits up to ``wait`` seconds: ``(None, False)`` when
        there is none.
        """
        with self._lock:
            value, built_at = self._value, self._built_at
        if built_at is None:
            run = self._start()
            if not run.done.wait(wait) or run.error is not None:
                return None, False
            return run.value, True
        if self._clock() - built_at >= max_age:
            run = self._start()
            if run.done.wait(min(wait, STALE_WAIT_SECONDS)) and run.error is None:
                return run.value, True
        return value, True

    def fresh(self, wait: float) -> _Build | None:
        """A rebuild's outcome, or None when it did not finish within ``wait`` seconds."""
        run = self._start()
        return run if run.done.wait(wait) else None


def _readiness(sources: HealthSources) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    try:
        health = sources.store_health()
        checks["store"] = {"ok": health.ok, "backend": health.backend, "warnings": health.warnings}
    except StoreUnavailable:
        checks["store"] = {"ok": False, "backend": sources.backend}
    try:
        checks["keys"] = {"ok": bool(sources.signing_key_ready())}
    except Exception as exc:  # no key, or a broken key ring, is "not ready", with the reason in the log
        log.warning("key ring not ready: %s: %s", exc.__class__.__name__, exc)
        checks["keys"] = {"ok": False}
    return checks


class HealthRoutes:
    """The documents behind the routes of one app; :meth:`warm` builds the JWKS ahead of the first request."""

    def __init__(self, sources: HealthSources) -> None:
        self.jwks = BackgroundValue(sources.jwks, "jwks-refresh")
        self.readiness = BackgroundValue(lambda: _readiness(sources), "readiness-check")

    def warm(self) -> None:
        """Start building the JWKS now, in the background (a serving process calls it once it has started)."""
        self.jwks.fresh(0)


HEALTH_EXTENSION = "broker.health"


def install_health_routes(app: Flask, sources: HealthSources) -> HealthRoutes:
    """Register /healthz, /readyz and /.well-known/jwks.json on ``app`` (see the module docstring).

    The returned :class:`HealthRoutes` is also ``app.extensions["broker.health"]``.
    """
    routes = app.extensions[HEALTH_EXTENSION] = HealthRoutes(sources)
    jwks_doc, readiness = routes.jwks, routes.readiness

    @app.get("/healthz")
    def healthz() -> Any:
        """Liveness: the process answers."""
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Any:
        """Readiness: the store answers and a signing key is loaded, judged within a bounded time."""
        run = readiness.fresh(sources.check_timeout_seconds)
        if run is None:
            checks: dict[str, Any] = {"readiness": {"ok": False, "reason": "timeout"}}
        elif run.error is not None:
            log.error("readiness check failed: %s", run.error.__class__.__name__)
            checks = {"readiness": {"ok": False, "reason": "error"}}
        else:
            checks = run.value
        ready = all(c["ok"] for c in checks.values())
        return jsonify(status="ready" if ready else "not_ready", checks=checks), (200 if ready else 503)

    @app.get("/.well-known/jwks.json")
    def jwks() -> Any:
        """Every public key that may still verify a live token of ours (RFC 7517)."""
        document, ok = jwks_doc.current(sources.jwks_refresh_seconds, sources.check_timeout_seconds)
        if not ok:
            response = jsonify(error="temporarily_unavailable", message="Our keys cannot be read yet; retry shortly.")
            response.status_code = 503
            response.headers["Retry-After"] = "1"
            response.headers["Cache-Control"] = "no-store"
            return response
        response = jsonify(document)
        # Never cache longer than a new key waits before it signs: verifiers must see it first.
        response.headers["Cache-Control"] = f"public, max-age={sources.jwks_max_age}"
        return response

    return routes


def health_sources_of(runtime: Any, check_timeout_seconds: float = 1.0) -> HealthSources:
    """The sources from the first release's Runtime (settings, store, keyring), until the container builds them."""
    keyring = runtime.keyring

    def signing_key_ready() -> bool:
        return keyring.signing_key() is not None

    return HealthSources(
        backend=runtime.store.backend,
        store_health=runtime.store.health,
        signing_key_ready=signing_key_ready,
        jwks=keyring.jwks,
        jwks_max_age=min(MAX_JWKS_AGE, runtime.settings.keys.publish_ahead_seconds),
        check_timeout_seconds=check_timeout_seconds,
    )
