#!/usr/bin/env python
"""Where a request of the real decision path spends its time: a profile of the served app.

Builds the broker the gateway bench serves (:mod:`gateway_real`: SQLite store, audit log,
passports from a pinned AAI, our access tokens, one dataset) and runs the exact WSGI app a
``ga4gh-broker serve`` worker runs (:func:`broker.serve.production.wsgi_app`, with its
:class:`~broker.serve.middleware.ServeMiddleware`) in this process, one request after another,
under pyinstrument (``--profiler pyinstrument``, the default) or cProfile. The server's own
part (granian's Rust HTTP work) is not in the profile; the bench measures it as ``/healthz``.

Per endpoint it prints the mean wall time per request (after warming the caches) and the
profile. Run: ``.venv/bin/python bench/profile_real.py [--requests 2000] [--profiler cprofile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from gateway import store_backend  # noqa: E402
from gateway_real import RealBroker  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from broker.serve.production import prepare, wsgi_app  # noqa: E402
from broker.settings import load_settings  # noqa: E402

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def call(app: App, environ: dict[str, Any]) -> str:
    """One request through the app; the status line (the body is read and closed as a server does)."""
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(line)

    body = app(dict(environ), start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[0]


def environ_for(broker: RealBroker, path: str, headers: dict[str, str]) -> dict[str, Any]:
    environ: dict[str, Any] = EnvironBuilder(path=path, base_url=broker.base, headers=headers).get_environ()
    environ["RAW_URI"] = path
    return environ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per endpoint under the profiler")
    parser.add_argument("--profiler", choices=("pyinstrument", "cprofile"), default="pyinstrument")
    parser.add_argument("--visas", type=int, default=10)
    parser.add_argument("--only", default=None, help="profile only endpoints whose name contains this")
    parser.add_argument("--backend", choices=("sqlite", "redis", "postgres"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="profile-real-") as tmp, store_backend(args.backend, Path(tmp)) as store:
        broker = RealBroker(Path(tmp) / "broker", 8080, store=store)
        broker.work.mkdir()
        broker.prepare()
        settings = load_settings(broker.config, environ={})
        prepare(settings)
        app = wsgi_app(settings)
        passport = broker.passport(args.visas)
        token = broker.access_token()
        ranged = {"Range": "bytes=0-1023"}
        endpoints = {
            "healthz": environ_for(broker, "/healthz", {}),
            "range-passport": environ_for(
                broker, broker.object_path, {"Authorization": f"Bearer {passport}", **ranged}
            ),
            "range-access-token": environ_for(
                broker, broker.object_path, {"Authorization": f"Bearer {token}", **ranged}
            ),
            "decision-passport": environ_for(
                broker,
                "/gateway/decision",
                {"Authorization": f"Bearer {passport}", "X-Original-URI": broker.object_path},
            ),
        }
        for name, environ in endpoints.items():
            if args.only and args.only not in name:
                continue
            for _ in range(20):
                status = call(app, environ)
            if not status.startswith(("200", "206")):
                raise SystemExit(f"{name}: {status}")
            started = time.perf_counter()
            if args.profiler == "cprofile":
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(args.requests):
                    call(app, environ)
                profile.disable()
                elapsed = time.perf_counter() - started
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(30)
                text = out.getvalue()
            else:
                from pyinstrument import Profiler  # optional tool, only this script needs it

                profiler = Profiler(interval=0.0002)
                profiler.start()
                for _ in range(args.requests):
                    call(app, environ)
                profiler.stop()
                elapsed = time.perf_counter() - started
                text = profiler.output_text(unicode=False, color=False, show_all=False)
            print(f"=== {name}: {1e6 * elapsed / args.requests:.0f} us per request (under the profiler)")
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
