"""The ``ga4gh-broker`` command line.

``config check`` lives here; every other command is a module of this package listed in
:data:`COMMAND_MODULES` with a ``register(subparsers)`` function. Command modules import
:mod:`broker.cli.context`, never this module, so the parser and its commands do not import
each other.

Every error is one line on stderr and a non-zero status: 2 for usage and settings
mistakes, 1 for a command that ran and failed. Never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from broker import __version__
from broker.cli.context import CommandError, Context, Handler
from broker.settings import SettingsError, redacted

__all__ = ["CommandError", "Context", "Handler", "build_parser", "main"]

COMMAND_MODULES = (
    "broker.cli.serve",
    "broker.cli.keys",
    "broker.cli.store",
    "broker.cli.passport",
    "broker.cli.researcher",
    "broker.cli.policy",
    "broker.cli.clients",
    "broker.cli.users",
    "broker.cli.dac",
    "broker.cli.demo",
    "broker.cli.applications",
    "broker.cli.apply",
)


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
