"""The ``ga4gh-broker`` command line.

Top-level commands live here (``serve``, ``config check``); each area adds its own
sub-commands from ``broker/<area>/commands.py`` through a ``register(subparsers)``
function, so the command for a part sits next to the part.

Every error is one line on stderr and a non-zero status: 2 for usage and settings
mistakes, 1 for a command that ran and failed. Never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from broker import __version__
from broker.errors import BrokerError
from broker.settings import Settings, SettingsError, load_settings, redacted
from broker.store import open_kernel
from broker.store.base import StoreError
from broker.store.kernel import Kernel

COMMAND_MODULES = (
    "broker.cli.keys",
    "broker.cli.store",
    "broker.cli.passport",
    "broker.cli.researcher",
    "broker.cli.policy",
    "broker.cli.clients",
    "broker.cli.users",
    "broker.cli.dac",
)


class CommandError(BrokerError):
    """A command failed in a way a person can act on; ``exit_status`` is the process's exit code."""

    code = "command_failed"

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = status


@dataclass
class Context:
    """What a command gets: parsed args and lazily loaded settings."""

    args: argparse.Namespace
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.args.config)
        return self._settings

    @contextmanager
    def kernel(self) -> Iterator[Kernel]:
        """The store kernel the settings name, closed afterwards; a store failure is one line (CommandError)."""
        settings = self.settings
        try:
            kernel = open_kernel(settings.store, settings.sqlite_path)
        except StoreError as exc:
            raise CommandError(f"store: {exc}") from None
        try:
            yield kernel
        except StoreError as exc:
            raise CommandError(f"store: {exc}") from None
        finally:
            kernel.close()

    def out(self, text: str = "") -> None:
        print(text)

    def out_json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, sort_keys=False))


Handler = Callable[[Context], int | None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ga4gh-broker",
        description="GA4GH Passport broker, visa issuer, clearinghouse and data gateway.",
    )
    parser.add_argument("--version", action="version", version=f"ga4gh-broker {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=None,
        help="settings file (YAML); default: $BROKER_CONFIG, else embedded defaults",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="run the broker (granian workers; --dev for Flask's server)")
    serve.add_argument("--dev", action="store_true", help="Flask development server, one process")
    serve.add_argument("--bind", default=None, help="HOST:PORT, overrides server.bind")
    serve.add_argument("--workers", type=int, default=None, help="overrides server.workers")
    serve.set_defaults(handler=_serve)

    config = sub.add_parser("config", help="settings tools")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION")
    config_sub.required = True
    check = config_sub.add_parser("check", help="validate settings and print them without secrets")
    check.set_defaults(handler=_config_check)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args=args)
    try:
        return int(args.handler(ctx) or 0)
    except SettingsError as exc:
        print(f"ga4gh-broker: settings error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"ga4gh-broker: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


def _config_check(ctx: Context) -> int:
    settings = ctx.settings
    ctx.out_json({"source": settings.source, "settings": redacted(settings)})
    return 0


def _serve(ctx: Context) -> int:
    from broker.cli.serve import run_dev, run_production

    settings = ctx.settings
    bind = ctx.args.bind or settings.server.bind
    if ctx.args.dev:
        return run_dev(settings, bind)
    return run_production(settings, bind, ctx.args.workers or settings.server.workers)
