"""``ga4gh-broker login|whoami|ls|download`` and ``passport get``: the researcher's commands.

Registered into the ``ga4gh-broker`` parser by :func:`register` (like every
``broker/<area>/commands.py``). They never read the server's settings: they talk to a broker
over HTTP only (its discovery document, DRS and the data route its DRS objects name), so they
work against any broker of this kind, at home or in another country.

Tokens live in the user's config folder (:mod:`broker.client.credentials`); no token is ever
printed or logged, except the passport that ``passport get`` prints on request (it is the
user's own credential, for piping into another tool).

Exit status: 0 done, 1 a request or a download failed, 2 a usage mistake.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker.cli.context import CommandError, Context
from broker.client.credentials import CredentialStore
from broker.client.crypt4gh import Decryptor, load_secret_key, public_key_header
from broker.client.download import Downloader
from broker.client.drs import DrsClient, check_dataset, check_purpose, split_target
from broker.client.htsget import download_region, endpoint_for, parse_region
from broker.client.http import EXIT_FAILED, EXIT_USAGE, ClientError, Http, printable
from broker.client.oauth import (
    DEFAULT_CLIENT_ID,
    DeviceLogin,
    TokenSource,
    discover,
    exchange_for_passport,
    load_tokens,
    read_secret_file,
    userinfo,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``login``, ``whoami``, ``ls``, ``download`` and ``passport get``."""
    login = sub.add_parser(
        "login",
        help="log in to a broker with the device flow; tokens are kept in your config folder",
        description="Log in with the OAuth device flow (RFC 8628): open the URL shown, enter the code, approve. "
        "Tokens are saved in $XDG_CONFIG_HOME/ga4gh-broker/credentials.json (mode 0600) and renewed when needed.",
    )
    login.add_argument("--broker", required=True, metavar="URL", help="the broker's URL (its OpenID issuer)")
    login.add_argument(
        "--client-id",
        default=DEFAULT_CLIENT_ID,
        metavar="ID",
        help=f"the OAuth client registered for this tool at the broker (default: {DEFAULT_CLIENT_ID}, a public client)",
    )
    login.add_argument(
        "--client-secret-file", default=None, metavar="FILE", help="the secret of a confidential client, from a file"
    )
    login.add_argument("--no-browser", action="store_true", help="do not try to open a browser")
    login.add_argument(
        "--scope",
        default=None,
        metavar="SCOPES",
        help="the scopes to ask for (default: openid ga4gh_passport_v1 profile email; add dac to apply for access)",
    )
    login.set_defaults(handler=_login)

    whoami = sub.add_parser("whoami", help="who you are logged in as (name, sub, e-mail, number of visas)")
    _broker_option(whoami)
    whoami.set_defaults(handler=_whoami)

    listing = sub.add_parser("ls", help="the files of a dataset you may read (through DRS)")
    listing.add_argument("dataset", metavar="DATASET")
    _broker_option(listing)
    _purpose_option(listing)
    listing.set_defaults(handler=_ls)

    download = sub.add_parser(
        "download",
        help="download files (resumable, sha-256 checked, in parallel)",
        description="Download DATASET/PATH files into DIR/PATH. An interrupted download resumes from its .part "
        "file; every file's sha-256 is checked against DRS before it is renamed into place.",
    )
    download.add_argument("targets", nargs="+", metavar="DATASET/PATH")
    download.add_argument("-o", "--output", default=".", metavar="DIR", help="where to write (default: here)")
    download.add_argument("--parallel", type=int, default=4, metavar="N", help="files at once (1-16, default 4)")
    download.add_argument(
        "--crypt4gh-key",
        default=None,
        metavar="PUBKEY",
        help="your Crypt4GH public key file: encrypted datasets are served re-encrypted to it",
    )
    download.add_argument(
        "--crypt4gh-secret-key",
        default=None,
        metavar="SECKEY",
        help="also decrypt each downloaded file with this secret key (passphrase from C4GH_PASSPHRASE or asked)",
    )
    download.add_argument(
        "--region",
        default=None,
        metavar="REGION",
        help="only this region of a .bam or .vcf.gz (chr1:1000-2000, 1-based), through the broker's htsget server",
    )
    _broker_option(download)
    _purpose_option(download)
    download.set_defaults(handler=_download)

    passport_sub = _passport_actions(sub)
    get = passport_sub.add_parser(
        "get",
        help="print a passport JWT for you (RFC 8693 token exchange)",
        description="Exchange your login for a GA4GH passport JWT and print it on stdout (your own credential: "
        "treat it like a password).",
    )
    _broker_option(get)
    get.add_argument("--resource", default=None, metavar="URL", help="the service the passport is for (its aud)")
    get.set_defaults(handler=_passport)


def _broker_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", default=None, metavar="URL", help="which login to use (default: the last one)")


def _purpose_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--purpose",
        default=None,
        metavar="TERM",
        help="your data use purpose, e.g. DUO:0000006 (sent as GA4GH-Purpose)",
    )


def _passport_actions(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    """The actions of ``passport`` (``broker.cli.passport`` adds inspect/verify), created if absent."""
    parser = sub.choices.get("passport")
    if parser is None:
        parser = sub.add_parser("passport", help="get, inspect or verify a GA4GH passport")
        actions: argparse._SubParsersAction = parser.add_subparsers(  # type: ignore[type-arg]
            dest="passport_command", metavar="ACTION"
        )
        actions.required = True
        return actions
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the passport command has no actions to add 'get' to")


def _run(body: Callable[[Context], int]) -> Callable[[Context], int]:
    """Turn a :class:`ClientError` into the CLI's one-line error and exit status."""

    def handler(ctx: Context) -> int:
        try:
            return body(ctx)
        except ClientError as exc:
            raise CommandError(exc.message, exc.exit_status) from None

    handler.__doc__ = body.__doc__
    return handler


def _tools(broker: str | None) -> tuple[Any, Any, TokenSource]:

    http = Http.create()
    store = CredentialStore.default()
    return http, store, load_tokens(http, store, broker)


@_run
def _login(ctx: Context) -> int:

    args = ctx.args
    secret = read_secret_file(args.client_secret_file) if args.client_secret_file else None
    http = Http.create()
    discovery = discover(http, args.broker)
    device = DeviceLogin(http, sys.stdout, open_browser=not args.no_browser)
    login = (
        device.run(discovery, args.client_id, secret)
        if args.scope is None
        else device.run(discovery, args.client_id, secret, scope=args.scope)
    )
    store = CredentialStore.default()
    store.save(login)
    ctx.out(f"Logged in at {printable(login.broker)}; tokens saved in {store.path}")
    return 0


@_run
def _whoami(ctx: Context) -> int:
    _http, _store, tokens = _tools(ctx.args.broker)
    info = userinfo(tokens)
    visas = info.get("ga4gh_passport_v1")
    ctx.out(f"broker: {printable(tokens.broker)}")
    ctx.out(f"name:   {printable(info.get('name', '-'), 200)}")
    ctx.out(f"sub:    {printable(info.get('sub', '-'), 200)}")
    ctx.out(f"e-mail: {printable(info.get('email', '-'), 200)}")
    ctx.out(f"visas:  {len(visas) if isinstance(visas, list) else 0}")
    return 0


@_run
def _passport(ctx: Context) -> int:
    _http, _store, tokens = _tools(ctx.args.broker)
    passport = exchange_for_passport(tokens, ctx.args.resource)
    sys.stdout.write(passport + "\n")  # on request: the user's own credential, never logged
    return 0


@_run
def _ls(ctx: Context) -> int:
    check_dataset(ctx.args.dataset)
    check_purpose(ctx.args.purpose)
    http, _store, tokens = _tools(ctx.args.broker)
    paths, truncated = DrsClient(http, tokens, purpose=ctx.args.purpose).list_dataset(ctx.args.dataset)
    for path in paths:
        ctx.out(printable(path, 2048))
    if truncated:
        print(f"ga4gh-broker: the listing was cut after {len(paths)} entries by the broker", file=sys.stderr)
    return 0


@_run
def _download(ctx: Context) -> int:

    args = ctx.args
    if not 1 <= args.parallel <= 16:
        raise ClientError("bad_parallel", "--parallel must be from 1 to 16.", EXIT_USAGE)
    targets = [split_target(t) for t in args.targets]
    check_purpose(args.purpose)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise ClientError("bad_output", f"{out_dir} is not a folder.", EXIT_USAGE)
    if args.crypt4gh_secret_key and not args.crypt4gh_key:
        raise ClientError(
            "bad_crypt4gh_key", "--crypt4gh-secret-key needs --crypt4gh-key (its public key).", EXIT_USAGE
        )
    key_header = public_key_header(args.crypt4gh_key) if args.crypt4gh_key else None
    decrypt = Decryptor(load_secret_key(args.crypt4gh_secret_key)) if args.crypt4gh_secret_key else None
    region = parse_region(args.region) if args.region else None
    if region is not None:
        for _, path in targets:
            endpoint_for(path)
        if decrypt is not None:
            raise ClientError("bad_region", "--region cannot be combined with --crypt4gh-secret-key.", EXIT_USAGE)
    http, _store, tokens = _tools(args.broker)
    drs = DrsClient(http, tokens, purpose=args.purpose, crypt4gh_key=key_header)
    if region is not None:
        failed = 0
        for dataset, path in dict.fromkeys(targets):
            try:
                print(download_region(drs, dataset, path, region, out_dir))
            except ClientError as exc:
                print(exc.message, file=sys.stderr)
                failed += 1
        return EXIT_FAILED if failed else 0
    downloader = Downloader(drs, out_dir, progress=sys.stderr.isatty(), decrypt=decrypt)
    outcomes = downloader.run(targets, args.parallel)
    for outcome in outcomes:
        stream = sys.stdout if outcome.ok else sys.stderr
        print(outcome.message, file=stream)
    failed = sum(1 for o in outcomes if not o.ok)
    if failed:
        print(f"ga4gh-broker: {failed} of {len(outcomes)} downloads failed", file=sys.stderr)
        return EXIT_FAILED
    return 0
