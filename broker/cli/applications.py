"""``ga4gh-broker applications list|show|approve|reject|return|remind``: DAC members review applications.

Every command acts as a named broker identity (``--as ID`` or ``$BROKER_ACTOR``) under the rules
of the REST API (:mod:`broker.dac.applications`): members and chairs of the application's DAC
and site admins decide; nobody decides an application they are an applicant on. The actor is
written to the audit log with every change. Researchers apply with ``ga4gh-broker apply``
(:mod:`broker.cli.apply`), which talks to a broker over HTTP.

Exit status: 0 done; 1 refused or failed (one line on stderr); 2 usage.
"""

from __future__ import annotations

import argparse
import time

from broker.cli.context import CommandError, Context
from broker.cli.dac import _actor, _end, _end_time, _iso, _services
from broker.dac.applications import application_to_json, comment_to_json
from broker.dac.grants import GrantFilter
from broker.dac.records import APPLICATION_STATES, Application
from broker.dac.services import DacServices


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``applications list|show|approve|reject|return``."""
    apps = sub.add_parser("applications", help="applications for access: list, show, approve, reject, return")
    asub = apps.add_subparsers(dest="applications_command", metavar="ACTION")
    asub.required = True

    listing = asub.add_parser("list", help="applications to the DACs you sit on, newest first")
    _actor(listing)
    listing.add_argument("--dac", default=None)
    listing.add_argument("--state", choices=APPLICATION_STATES, default=None)
    listing.add_argument("--dataset", default=None)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    show = asub.add_parser("show", help="one application with its comments")
    _actor(show)
    show.add_argument("application_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)

    approve = asub.add_parser("approve", help="approve until an end; the last required approval makes the grants")
    _actor(approve)
    approve.add_argument("application_id")
    _end(approve)
    approve.add_argument("--reason", default="")
    approve.set_defaults(handler=_approve)

    remind = asub.add_parser(
        "remind",
        help="e-mail holders whose grants end within N days (once per grant and end; run it daily)",
    )
    _actor(remind)
    remind.add_argument("--days", type=float, default=30.0, metavar="N")
    remind.set_defaults(handler=_remind)

    for name, handler, text in (
        ("reject", _reject, "reject with a reason the applicant sees"),
        ("return", _return, "return for changes, with a reason"),
    ):
        action = asub.add_parser(name, help=text)
        _actor(action)
        action.add_argument("application_id")
        action.add_argument("--reason", required=True)
        action.set_defaults(handler=handler)


def _names(svc: DacServices, app: Application) -> str:
    person = svc.grants.identities.get(app.applicant)
    name = (person.display_name or person.email) if person is not None else ""
    return f"{name} ({app.applicant})" if name else app.applicant


def _line(ctx: Context, svc: DacServices, app: Application) -> None:
    required = svc.applications.settings_of(app.dac).required_approvals
    ctx.out(
        f"{app.id}\t{app.state}\t{app.dac}\t{','.join(app.datasets)}\t{_names(svc, app)}\t"
        f"{len(app.approvals)}/{required} approvals\t{app.title}"
    )


def _list(ctx: Context) -> int:
    a = ctx.args
    with _services(ctx) as (svc, actor):
        found = svc.applications.list(actor, dac=a.dac, state=a.state, dataset=a.dataset)
        if a.json:
            ctx.out_json([application_to_json(app) for app in found])
        else:
            for app in found:
                _line(ctx, svc, app)
    return 0


def _show(ctx: Context) -> int:
    with _services(ctx) as (svc, actor):
        app = svc.applications.get(actor, ctx.args.application_id)
        thread = svc.applications.comments(actor, app.id)
        if ctx.args.json:
            ctx.out_json({**application_to_json(app), "comments": [comment_to_json(c) for c in thread]})
            return 0
        required = svc.applications.settings_of(app.dac).required_approvals
        ctx.out(f"application  {app.id} ({app.state})")
        ctx.out(f"applicant    {_names(svc, app)}")
        ctx.out(f"DAC          {app.dac}; datasets {', '.join(app.datasets)}")
        ctx.out(f"title        {app.title}")
        ctx.out(f"purpose      {', '.join(app.purpose_codes)}: {app.purpose_text}")
        ctx.out(f"institution  {app.institution}")
        ctx.out(f"co-applicants {', '.join(app.co_applicants) or '-'}")
        ctx.out(f"terms        {', '.join(app.accepted_terms) or '-'}")
        ctx.out(f"submitted    {_iso(app.submitted_at)}; approvals {len(app.approvals)}/{required}")
        if app.decided_at is not None:
            ctx.out(f"decided      {_iso(app.decided_at)} by {app.decided_by}: {app.decision_reason or '-'}")
        if app.closed_reason:
            ctx.out(f"closed       {app.closed_reason}")
        for comment in thread:
            ctx.out(f"  [{_iso(comment.at)}] {comment.author} ({comment.side}): {comment.text}")
    return 0


def _approve(ctx: Context) -> int:
    with _services(ctx) as (svc, actor):
        app = svc.applications.approve(actor, ctx.args.application_id, _end_time(ctx), ctx.args.reason)
        _line(ctx, svc, app)
    return 0


def _reject(ctx: Context) -> int:
    with _services(ctx) as (svc, actor):
        app = svc.applications.reject(actor, ctx.args.application_id, ctx.args.reason)
        _line(ctx, svc, app)
    return 0


def _return(ctx: Context) -> int:
    with _services(ctx) as (svc, actor):
        app = svc.applications.send_back(actor, ctx.args.application_id, ctx.args.reason)
        _line(ctx, svc, app)
    return 0


def _remind(ctx: Context) -> int:
    """Queue one reminder per expiring grant the actor may see (e-mail must be configured)."""
    with _services(ctx) as (svc, actor):
        if not svc.notifiers:
            raise CommandError("no SMTP server is configured (dac.notifications.smtp_host)", 1)
        now = int(time.time())
        sent = 0
        for grant in svc.grants.list(actor, GrantFilter(expiring_within_days=ctx.args.days)):
            if svc.repository.claim_reminder(grant, now) and svc.notifiers[0].remind(grant):
                sent += 1
        ctx.out(f"reminded {sent} holder(s) of grants ending within {ctx.args.days:g} days")
    return 0
