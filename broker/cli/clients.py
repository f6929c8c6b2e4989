"""``ga4gh-broker clients add|list|update|remove|hash-secret``: OAuth clients kept in the store.

``clients add`` prints a confidential client's secret exactly once (it is stored only as an
HMAC-SHA-256 under the server pepper, :mod:`broker.keys.pepper`), and so does
``clients update --rotate-secret`` for the new one; ``clients hash-secret`` prints a new secret
and its hash for a client declared in the settings file (``oidc.clients[].secret_hash``; valid for
the broker whose keys directory, or ``keys.encryption_secret``, made it). A client gets the scopes
discovery advertises unless ``--scope`` names others; ``dac`` and ``ga4gh_permissions`` are given
only by name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from broker.cli.context import CommandError, Context
from broker.errors import BrokerError
from broker.keys.pepper import load_pepper
from broker.oidc.clients import AUTH_METHODS, GRANT_TYPES, ClientRegistry
from broker.oidc.passwords import hmac_secret, new_secret
from broker.oidc.records import Client
from broker.oidc.repository import OidcRepository
from broker.oidc.scopes import DEFAULT_SCOPES, SCOPES

SCOPE_HELP = f"allowed scope (repeatable; default: {' '.join(DEFAULT_SCOPES)}, the scopes discovery advertises)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``clients add``, ``clients list``, ``clients update``, ``clients remove`` and ``clients hash-secret``."""
    clients = sub.add_parser("clients", help="OAuth clients: add, list, update, remove, hash-secret")
    clients_sub = clients.add_subparsers(dest="clients_command", metavar="ACTION")
    clients_sub.required = True

    add = clients_sub.add_parser("add", help="register a client (a confidential client's secret is printed once)")
    add.add_argument("client_id")
    add.add_argument("--name", default="")
    add.add_argument("--redirect-uri", action="append", default=[], help="exact redirect URI (repeatable)")
    add.add_argument("--post-logout-redirect-uri", action="append", default=[], help="exact URI (repeatable)")
    add.add_argument(
        "--grant",
        action="append",
        default=None,
        help="allowed grant type (repeatable; default: code, refresh, device, and token exchange "
        "for confidential clients)",
    )
    add.add_argument("--scope", action="append", default=None, choices=SCOPES, help=SCOPE_HELP)
    add.add_argument(
        "--auth-method",
        choices=AUTH_METHODS,
        default="client_secret_basic",
        help="token endpoint authentication; 'none' makes a public client (PKCE required)",
    )
    add.add_argument("--public", action="store_true", help="same as --auth-method none")
    add.add_argument(
        "--no-pkce",
        action="store_true",
        help="let this confidential client skip PKCE (relaxes THREAT-MODEL OA-05; logged at every start)",
    )
    add.add_argument("--jwks-file", default=None, help="the client's public JWKS (private_key_jwt)")
    add.add_argument("--json", action="store_true", help="machine-readable output")
    add.set_defaults(handler=_add)

    listing = clients_sub.add_parser("list", help="every client (store and settings), without secrets")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    update = clients_sub.add_parser(
        "update", help="change a stored client; a repeatable option given replaces that whole list"
    )
    update.add_argument("client_id")
    update.add_argument("--name", default=None)
    update.add_argument("--redirect-uri", action="append", default=None, help="exact redirect URI (repeatable)")
    update.add_argument("--post-logout-redirect-uri", action="append", default=None, help="exact URI (repeatable)")
    update.add_argument("--grant", action="append", default=None, choices=GRANT_TYPES, help="grant type (repeatable)")
    update.add_argument("--scope", action="append", default=None, choices=SCOPES, help="allowed scope (repeatable)")
    update.add_argument("--rotate-secret", action="store_true", help="replace the secret; the new one is printed once")
    update.add_argument("--json", action="store_true", help="machine-readable output")
    update.set_defaults(handler=_update)

    remove = clients_sub.add_parser("remove", help="delete a client from the store")
    remove.add_argument("client_id")
    remove.set_defaults(handler=_remove)

    hashing = clients_sub.add_parser("hash-secret", help="make a new secret and its hash for the settings file")
    hashing.set_defaults(handler=_hash_secret)


@contextmanager
def _clients(ctx: Context, *, making_secrets: bool = False) -> Iterator[ClientRegistry]:
    """The clients of the settings file and of the store (closed after use); with the pepper to make secrets."""
    with ctx.kernel() as kernel:
        pepper = load_pepper(ctx.settings.keys, ctx.settings.keys_path) if making_secrets else None
        yield ClientRegistry(ctx.settings.oidc.clients, OidcRepository(kernel, family_marker_seconds=3600), pepper)


def _add(ctx: Context) -> int:
    args = ctx.args
    method = "none" if args.public else args.auth_method
    jwks = None
    if args.jwks_file:
        try:
            with open(args.jwks_file, encoding="utf-8") as fh:
                jwks = json.load(fh)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read --jwks-file: {exc.__class__.__name__}") from None
    if any(c.client_id == args.client_id for c in ctx.settings.oidc.clients):
        raise CommandError(f"client {args.client_id!r} is declared in the settings file")
    with _clients(ctx, making_secrets=True) as clients:
        try:
            created = clients.create(
                args.client_id,
                name=args.name,
                redirect_uris=tuple(args.redirect_uri),
                grant_types=tuple(args.grant) if args.grant else None,
                scopes=tuple(args.scope) if args.scope else DEFAULT_SCOPES,
                auth_method=method,
                jwks=jwks,
                post_logout_redirect_uris=tuple(args.post_logout_redirect_uri),
                require_pkce=not args.no_pkce,
            )
        except BrokerError as exc:
            raise CommandError(exc.message, 1) from None
    _show(ctx, created.client, created.secret)
    return 0


def _update(ctx: Context) -> int:
    args = ctx.args

    def listed(values: list[str] | None) -> tuple[str, ...] | None:
        return tuple(values) if values is not None else None

    with _clients(ctx, making_secrets=args.rotate_secret) as clients:
        try:
            updated = clients.update(
                args.client_id,
                name=args.name,
                redirect_uris=listed(args.redirect_uri),
                grant_types=listed(args.grant),
                scopes=listed(args.scope),
                post_logout_redirect_uris=listed(args.post_logout_redirect_uri),
                rotate_secret=args.rotate_secret,
            )
        except BrokerError as exc:
            raise CommandError(exc.message, 1) from None
    _show(ctx, updated.client, updated.secret)
    return 0


def _show(ctx: Context, client: Client, secret: str | None) -> None:
    """What ``add`` and ``update`` print: the client and, when one was made, its secret (once)."""
    if ctx.args.json:
        out = _describe(client)
        if secret:
            out["client_secret"] = secret
        ctx.out_json(out)
        return
    ctx.out(f"client_id:     {client.client_id}")
    ctx.out(f"auth method:   {client.auth_method}")
    ctx.out(f"grant types:   {' '.join(client.grant_types)}")
    ctx.out(f"scopes:        {' '.join(client.scopes)}")
    ctx.out(f"redirect URIs: {' '.join(client.redirect_uris)}")
    if secret:
        ctx.out(f"client_secret: {secret}")
        print("Store the secret now: it is kept only as a hash and cannot be shown again.", file=sys.stderr)


def _describe(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "auth_method": client.auth_method,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "grant_types": list(client.grant_types),
        "scopes": list(client.scopes),
        "require_pkce": client.require_pkce,
    }


def _list(ctx: Context) -> int:
    with _clients(ctx) as clients:
        rows = [{**_describe(c), "from": "store"} for c in clients.stored()]
        rows += [{**_describe(c), "from": "settings"} for c in clients.declared()]
    if ctx.args.json:
        ctx.out_json(rows)
        return 0
    for row in rows:
        ctx.out(f"{row['client_id']}\t{row['auth_method']}\t{row['from']}\t{' '.join(row['redirect_uris'])}")
    return 0


def _remove(ctx: Context) -> int:
    with _clients(ctx) as clients:
        if not clients.delete(ctx.args.client_id):
            raise CommandError(f"no client {ctx.args.client_id!r} in the store")
    ctx.out(f"removed {ctx.args.client_id}")
    return 0


def _hash_secret(ctx: Context) -> int:
    secret = new_secret()
    ctx.out(f"client_secret: {secret}")
    ctx.out(f"secret_hash:   {hmac_secret(secret, load_pepper(ctx.settings.keys, ctx.settings.keys_path))}")
    return 0
