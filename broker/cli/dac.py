"""Command-line commands of DACs (registered by broker.cli): ``grants ...``, ``dac members ...``, ``dac migrate``.

Every command acts as a named broker identity (``--as ID`` or ``$BROKER_ACTOR``) under exactly
the rules of the REST API: a DAC member on their DAC's datasets, a chair also on members, a
site admin (``dac.admins``) on everything. Shell access to the store is not a role; the
actor is written to the audit log with every change.

``dac migrate`` is the operator's: it moves the first release's DAC records (memberships and
registered access kept as grants) to the DAC area's own kinds (:mod:`broker.dac.migrate`).

Exit status: 0 done; 1 refused or failed (one line on stderr; for an import, one line per
bad line of the file); 2 usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from broker.cli.context import CommandError, Context
from broker.dac.errors import DacError, Forbidden, ImportRejected
from broker.dac.grants import GrantFilter, GrantRequest, grant_to_json, parse_time
from broker.dac.migrate import migrate
from broker.dac.records import Grant
from broker.dac.services import DacServices, build_services
from broker.identity.service import IdentityService
from broker.settings import DEFAULTS, ENV_CONFIG_FILE
from broker.store import open_kernel
from broker.store.base import StoreError

ACTOR_ENV = "BROKER_ACTOR"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``grants add|renew|revoke|list|import``, ``dac members list|add|remove`` and ``dac migrate``."""
    grants = sub.add_parser("grants", help="DAC grants: add, renew, revoke, list, import")
    gsub = grants.add_subparsers(dest="grants_command", metavar="ACTION")
    gsub.required = True

    add = gsub.add_parser("add", help="grant a researcher access to a dataset")
    _actor(add)
    add.add_argument("identity", help="the researcher's broker identity id")
    add.add_argument("dataset", help="the dataset id")
    _end(add)
    add.add_argument("--start", default=None, help="ISO date/time or epoch seconds (default: now)")
    add.add_argument("--reason", default="", help="why (kept in the grant and the audit log)")
    add.add_argument("--json", action="store_true", help="print the grant as JSON")
    add.set_defaults(handler=_grants_add)

    renew = gsub.add_parser("renew", help="give a grant a new end")
    _actor(renew)
    renew.add_argument("grant_id")
    _end(renew)
    renew.add_argument("--reason", default="")
    renew.set_defaults(handler=_grants_renew)

    revoke = gsub.add_parser("revoke", help="revoke a grant (a reason is required)")
    _actor(revoke)
    revoke.add_argument("grant_id")
    revoke.add_argument("--reason", required=True)
    revoke.set_defaults(handler=_grants_revoke)

    listing = gsub.add_parser("list", help="the grants you may see, filtered")
    _actor(listing)
    listing.add_argument("--dataset", default=None)
    listing.add_argument("--dac", default=None)
    listing.add_argument("--identity", default=None)
    live = listing.add_mutually_exclusive_group()
    live.add_argument("--live", action="store_true", default=None, help="only grants in force now")
    live.add_argument("--not-live", dest="live", action="store_false", help="only revoked, ended or future grants")
    listing.add_argument(
        "--expiring-days", type=float, default=None, metavar="N", help="only live grants ending within N days"
    )
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_grants_list)

    imp = gsub.add_parser(
        "import",
        help="import grants from CSV, all or nothing",
        description="CSV with a header line: identity,dataset,end[,start][,reason]. "
        "Every line is checked first; with any bad line nothing is imported.",
    )
    _actor(imp)
    imp.add_argument("file", help="CSV file, or - for standard input")
    imp.set_defaults(handler=_grants_import)

    dac = sub.add_parser("dac", help="data access committees")
    dsub = dac.add_subparsers(dest="dac_command", metavar="ACTION")
    dsub.required = True
    members = dsub.add_parser("members", help="DAC members: list, add, remove")
    msub = members.add_subparsers(dest="members_command", metavar="ACTION")
    msub.required = True
    mlist = msub.add_parser("list", help="the members of a DAC")
    _actor(mlist)
    mlist.add_argument("dac")
    mlist.add_argument("--json", action="store_true")
    mlist.set_defaults(handler=_members_list)
    madd = msub.add_parser("add", help="add a member (chair or site admin)")
    _actor(madd)
    madd.add_argument("dac")
    madd.add_argument("identity")
    madd.add_argument("--role", choices=("member", "chair"), default="member")
    madd.add_argument("--reason", default="")
    madd.set_defaults(handler=_members_add)
    mremove = msub.add_parser("remove", help="remove a member (chair or site admin)")
    _actor(mremove)
    mremove.add_argument("dac")
    mremove.add_argument("identity")
    mremove.add_argument("--reason", default="")
    mremove.set_defaults(handler=_members_remove)
    migrate = dsub.add_parser(
        "migrate",
        help="move the first release's DAC records to their own kinds (run once after upgrading)",
        description="Memberships and registered-access records the first release kept as grants move to "
        "their own kinds; outstanding grants claim their slot. Safe to run again.",
    )
    migrate.set_defaults(handler=_migrate)


def _actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as", dest="actor", default=None, metavar="ID", help=f"the broker identity acting (default: ${ACTOR_ENV})"
    )


def _end(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--end", default=None, help="ISO date/time or epoch seconds")
    group.add_argument("--days", type=float, default=None, help="ends this many days from now")


@contextmanager
def _services(ctx: Context) -> Iterator[tuple[DacServices, str]]:
    """The services over the configured store kernel, and the actor; store errors become one line.

    A command changes the store only: the serving processes' RevocationWatchers read its
    revocations from the audit log and evict their caches.
    """
    actor = ctx.args.actor or os.environ.get(ACTOR_ENV)
    if not actor:
        raise CommandError(f"name the acting identity with --as ID or ${ACTOR_ENV}", 2)
    settings = ctx.settings
    kernel = open_kernel(settings.store, settings.sqlite_path)
    services = build_services(
        settings.dac, settings.issuer, kernel, IdentityService(kernel), product=settings.site.product
    )
    try:
        yield services, actor
    except DacError as exc:
        if isinstance(exc, ImportRejected):
            for problem in exc.errors:
                print(f"line {problem.line}: {problem.message}", file=sys.stderr)
        message = f"{exc.code}: {exc.message}"
        if isinstance(exc, Forbidden) and settings.source == DEFAULTS:
            message += (
                " (no settings file was loaded, so no DAC and no member is configured: "
                f"pass -c FILE or set {ENV_CONFIG_FILE})"
            )
        raise CommandError(message, 1) from None
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", 1) from None
    finally:
        for mailer in services.notifiers:  # a decision made here still tells people before the command exits
            mailer.flush()
        kernel.close()


def _end_time(ctx: Context) -> int:
    if ctx.args.days is not None:
        if ctx.args.days <= 0:
            raise CommandError("--days must be greater than 0", 2)
        return int(time.time() + ctx.args.days * 86400)
    return parse_time(ctx.args.end, "end")


def _iso(ts: int | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _show(ctx: Context, grant: Grant) -> None:
    state = "live" if grant.live(int(time.time())) else ("revoked" if grant.revoked_at else "not live")
    ctx.out(
        f"{grant.id}\t{grant.identity_id}\t{grant.dataset}\t{grant.dac}\t{_iso(grant.start)}\t"
        f"{_iso(grant.end)}\t{state}"
    )


def _grants_add(ctx: Context) -> int:
    with _services(ctx) as (svc, actor):
        grant = svc.grants.grant(
            actor,
            GrantRequest(
                identity=ctx.args.identity,
                dataset=ctx.args.dataset,
                end=_end_time(ctx),
                start=parse_time(ctx.args.start, "start") if ctx.args.start else None,
                reason=ctx.args.reason,
            ),
        )
    if ctx.args.json:
        ctx.out_json(grant_to_json(grant))
    else:
        ctx.out(grant.id)
    return 0


def _grants_renew(ctx: Context) -> int:
    with _services(ctx) as (svc, actor):
        grant = svc.grants.renew(actor, ctx.args.grant_id, _end_time(ctx), ctx.args.reason)
    _show(ctx, grant)
    return 0


def _grants_revoke(ctx: Context) -> int:
    with _services(ctx) as (svc, actor):
        grant = svc.grants.revoke(actor, ctx.args.grant_id, ctx.args.reason)
    _show(ctx, grant)
    return 0


def _grants_list(ctx: Context) -> int:
    a = ctx.args
    with _services(ctx) as (svc, actor):
        grants = svc.grants.list(
            actor,
            GrantFilter(
                dataset=a.dataset, dac=a.dac, identity=a.identity, live=a.live, expiring_within_days=a.expiring_days
            ),
        )
    if a.json:
        now = int(time.time())
        ctx.out_json([grant_to_json(g, now) for g in grants])
    else:
        for grant in grants:
            _show(ctx, grant)
    return 0


def _grants_import(ctx: Context) -> int:
    path = ctx.args.file
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc.__class__.__name__}", 1) from None
    with _services(ctx) as (svc, actor):
        grants = svc.grants.import_csv(actor, text)
    ctx.out(f"imported {len(grants)} grant(s)")
    return 0


def _members_list(ctx: Context) -> int:
    with _services(ctx) as (svc, actor):
        members = svc.members.list(actor, ctx.args.dac)
    if ctx.args.json:
        ctx.out_json([m.to_json() for m in members])
    else:
        for m in members:
            ctx.out(f"{m.identity_id}\t{m.role}\t{m.origin}")
    return 0


def _members_add(ctx: Context) -> int:
    with _services(ctx) as (svc, actor):
        member = svc.members.add(actor, ctx.args.dac, ctx.args.identity, ctx.args.role, ctx.args.reason)
    ctx.out(f"{member.identity_id}\t{member.role}\tadded to {member.dac}")
    return 0


def _members_remove(ctx: Context) -> int:
    with _services(ctx) as (svc, actor):
        svc.members.remove(actor, ctx.args.dac, ctx.args.identity, ctx.args.reason)
    ctx.out(f"{ctx.args.identity}\tremoved from {ctx.args.dac}")
    return 0


def _migrate(ctx: Context) -> int:
    with ctx.kernel() as kernel:
        report = migrate(kernel)
    ctx.out(
        f"moved {len(report.memberships)} membership(s), {len(report.registered)} registered-access record(s); "
        f"{len(report.slots)} grant(s) claimed their slot"
    )
    for grant_id in report.duplicates:
        ctx.out(f"duplicate outstanding grant (revoke it if it should not stand): {grant_id}")
    for record_id in report.skipped:
        ctx.out(f"left alone (not a record this broker wrote): {record_id}")
    return 0
