"""``ga4gh-broker users add``: local accounts for the ``local`` login connector.

The password is read from standard input (never from the command line, where it would
land in shell history and the process list).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from broker.cli.context import CommandError
from broker.identity.service import IdentityService
from broker.login.local import AccountError, LocalAccounts

if TYPE_CHECKING:
    from broker.cli.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="local login accounts: add")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION")
    users_sub.required = True
    add = users_sub.add_parser("add", help="create an account; the password is read from stdin")
    add.add_argument("username")
    add.add_argument("--name", default="", help="display name")
    add.add_argument("--email", default="", help="shown to DAC members; never used to link accounts")
    add.add_argument("--connector", default=None, help="local connector id (default: the first local one)")
    add.set_defaults(handler=_add)


def _add(ctx: Context) -> int:
    settings = ctx.settings
    local_ids = [c.id for c in settings.login.connectors if c.kind == "local"]
    connector = ctx.args.connector or (local_ids[0] if local_ids else None)
    if connector not in local_ids:
        raise CommandError("no such local connector in login.connectors", 2)
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    with ctx.kernel() as kernel:
        accounts = LocalAccounts(kernel, IdentityService(kernel), settings.issuer)
        try:
            identity = accounts.add(
                connector, ctx.args.username, password, display_name=ctx.args.name, email=ctx.args.email
            )
        except AccountError as exc:
            raise CommandError(str(exc)) from None
    ctx.out(f"created {ctx.args.username} (sub {identity.id})")
    return 0
