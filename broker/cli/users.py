"""``ga4gh-broker users add|list|passwd|remove``: local accounts for the ``local`` login connector.

A password is read from standard input (never from the command line, where it would land in
shell history and the process list). ``list`` shows names and e-mail addresses, never a
password hash. ``remove`` deletes the local login (password and link) but keeps the broker
account, whose DAC grants and audit trail name it.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from broker.cli.context import CommandError
from broker.errors import BrokerError
from broker.identity.service import IdentityService
from broker.login.local import LocalAccounts

if TYPE_CHECKING:
    from broker.cli.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``users add``, ``users list``, ``users passwd`` and ``users remove``."""
    users = sub.add_parser("users", help="local login accounts: add, list, passwd, remove")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION")
    users_sub.required = True
    connector_help = "local connector id (default: the first local one)"

    add = users_sub.add_parser("add", help="create an account; the password is read from stdin")
    add.add_argument("username")
    add.add_argument("--name", default="", help="display name")
    add.add_argument("--email", default="", help="shown to DAC members; never used to link accounts")
    add.add_argument("--connector", default=None, help=connector_help)
    add.set_defaults(handler=_add)

    listing = users_sub.add_parser("list", help="every local account: user name, sub, name and e-mail")
    listing.add_argument("--connector", default=None, help="only this local connector")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list)

    passwd = users_sub.add_parser("passwd", help="set a new password, read from stdin")
    passwd.add_argument("username")
    passwd.add_argument("--connector", default=None, help=connector_help)
    passwd.set_defaults(handler=_passwd)

    remove = users_sub.add_parser("remove", help="delete a local login (the account's grants and audit stay)")
    remove.add_argument("username")
    remove.add_argument("--connector", default=None, help=connector_help)
    remove.set_defaults(handler=_remove)


def _connector(ctx: Context) -> str:
    """The local connector the command names, else the first local one (CommandError if none)."""
    local_ids = [c.id for c in ctx.settings.login.connectors if c.kind == "local"]
    connector = ctx.args.connector or (local_ids[0] if local_ids else None)
    if connector is None or connector not in local_ids:
        raise CommandError("no such local connector in login.connectors", 2)
    return str(connector)


def _password() -> str:
    """The password: prompted without echo on a terminal, else the first line of stdin."""
    return getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")


def _add(ctx: Context) -> int:
    connector = _connector(ctx)
    password = _password()
    with ctx.kernel() as kernel:
        accounts = LocalAccounts(kernel, IdentityService(kernel), ctx.settings.issuer)
        try:
            identity = accounts.add(
                connector, ctx.args.username, password, display_name=ctx.args.name, email=ctx.args.email
            )
        except BrokerError as exc:
            raise CommandError(exc.message) from None
    ctx.out(f"created {ctx.args.username} (sub {identity.id})")
    return 0


def _list(ctx: Context) -> int:
    if ctx.args.connector is not None:
        _connector(ctx)
    with ctx.kernel() as kernel:
        rows = LocalAccounts(kernel, IdentityService(kernel), ctx.settings.issuer).accounts(ctx.args.connector)
    if ctx.args.json:
        ctx.out_json(
            [
                {
                    "username": r.username,
                    "connector": r.connector,
                    "sub": r.identity_id,
                    "name": r.display_name,
                    "email": r.email,
                }
                for r in rows
            ]
        )
        return 0
    if not rows:
        ctx.out("no local accounts")
        return 0
    ctx.out("USERNAME\tCONNECTOR\tSUB\tNAME\tE-MAIL")
    for r in rows:
        ctx.out(f"{r.username}\t{r.connector}\t{r.identity_id}\t{r.display_name}\t{r.email}")
    return 0


def _passwd(ctx: Context) -> int:
    connector = _connector(ctx)
    password = _password()
    with ctx.kernel() as kernel:
        accounts = LocalAccounts(kernel, IdentityService(kernel), ctx.settings.issuer)
        try:
            accounts.set_password(connector, ctx.args.username, password)
        except BrokerError as exc:
            raise CommandError(exc.message) from None
    ctx.out(f"password of {ctx.args.username} changed")
    return 0


def _remove(ctx: Context) -> int:
    connector = _connector(ctx)
    with ctx.kernel() as kernel:
        accounts = LocalAccounts(kernel, IdentityService(kernel), ctx.settings.issuer)
        try:
            identity_id = accounts.remove(connector, ctx.args.username)
        except BrokerError as exc:
            raise CommandError(exc.message) from None
    ctx.out(f"removed the local login {ctx.args.username} (account {identity_id} and its grants are kept)")
    return 0
