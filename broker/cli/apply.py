"""``ga4gh-broker apply`` and ``ga4gh-broker application``: a researcher applies for access over HTTP.

Like the other researcher commands (:mod:`broker.cli.researcher`) it never reads the server's
settings: it uses the login saved by ``ga4gh-broker login`` (with the ``dac`` scope) and the
broker's ``/api/dac/applications`` API through :mod:`broker.client.applications`.

Exit status: 0 done, 1 the broker refused (one line naming each bad field), 2 a usage mistake.
"""

from __future__ import annotations

import argparse

from broker.cli.context import CommandError, Context
from broker.client.applications import ApplicationRequest, apply, status
from broker.client.credentials import CredentialStore
from broker.client.http import ClientError, Http, printable
from broker.client.oauth import TokenSource, load_tokens


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``apply`` and ``application status``."""
    parser = sub.add_parser(
        "apply",
        help="apply to a DAC for access to datasets (through the broker's API)",
        description="Start an application for DATASET(s) of one DAC and submit it. The DAC's members review it; "
        "follow it with: ga4gh-broker application status ID",
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET")
    parser.add_argument("--title", default="", help="project title")
    parser.add_argument("--purpose", action="append", default=[], metavar="DUO", help="DUO purpose term (repeat)")
    parser.add_argument("--purpose-text", default="", help="what you will do with the data")
    parser.add_argument("--institution", default="")
    parser.add_argument("--co-applicant", action="append", default=[], metavar="EMAIL", help="(repeat)")
    parser.add_argument(
        "--accept-terms", action="store_true", help="accept the current terms of every dataset (see the form)"
    )
    parser.add_argument("--draft", action="store_true", help="keep it as a draft instead of submitting")
    parser.add_argument("--broker", default=None, metavar="URL", help="which login to use (default: the last one)")
    parser.set_defaults(handler=_apply)

    app = sub.add_parser("application", help="your application's state and comments")
    asub = app.add_subparsers(dest="application_command", metavar="ACTION")
    asub.required = True
    show = asub.add_parser("status", help="state, decision reason and comments of one application")
    show.add_argument("application_id")
    show.add_argument("--broker", default=None, metavar="URL")
    show.set_defaults(handler=_status)


def _tokens(broker: str | None) -> TokenSource:
    return load_tokens(Http.create(), CredentialStore.default(), broker)


def _apply(ctx: Context) -> int:
    a = ctx.args
    try:
        made = apply(
            _tokens(a.broker),
            ApplicationRequest(
                datasets=a.datasets,
                title=a.title,
                purpose_codes=a.purpose,
                purpose_text=a.purpose_text,
                institution=a.institution,
                co_applicants=a.co_applicant,
                accept_terms=a.accept_terms,
                submit=not a.draft,
            ),
        )
    except ClientError as exc:
        raise CommandError(f"{exc.code}: {exc.message}", exc.exit_status) from None
    ctx.out(
        f"{printable(made.get('id'), 80)}\t{printable(made.get('state'), 20)}\tDAC {printable(made.get('dac'), 64)}"
    )
    return 0


def _status(ctx: Context) -> int:
    try:
        found = status(_tokens(ctx.args.broker), ctx.args.application_id)
    except ClientError as exc:
        raise CommandError(f"{exc.code}: {exc.message}", exc.exit_status) from None
    ctx.out(
        f"{printable(found.get('id'), 80)}\t{printable(found.get('state'), 20)}\t{printable(found.get('title'), 200)}"
    )
    for key, label in (("decision_reason", "decision"), ("closed_reason", "closed")):
        if found.get(key):
            ctx.out(f"{label}: {printable(found[key], 1000)}")
    for comment in found.get("comments", []) if isinstance(found.get("comments"), list) else []:
        if isinstance(comment, dict):
            ctx.out(f"  {printable(comment.get('author_name'), 80)}: {printable(comment.get('text'), 2000)}")
    return 0
