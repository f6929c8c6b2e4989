"""Web pages of DAC members and researchers (server-rendered Jinja, no JavaScript needed).

- ``/dac``: the DACs you sit on, their datasets, the grants expiring soon;
- ``/dac/datasets/<dataset>``: the grants on one dataset (filter: live, all, expiring), the grant
  form, renew and revoke (with a reason) per grant, and the dataset's audit trail;
- ``/account/visas``: a researcher's identities and links, their visas decoded (type, value,
  source, by, expiry) with the raw JWT on demand, their registered-access records and the
  form to accept the registered-access terms.

Security (THREAT-MODEL UI-01..UI-12): every page needs the browser session of the login pages
(anonymous -> 303 to ``/login``); every form carries a CSRF token bound to the session and to
what the form acts on (``revoke:<grant id>``...); a POST whose ``Origin`` is not our own (or is
``null``) or whose ``Sec-Fetch-Site`` is cross-site is refused before anything else; pages are
rendered with Jinja autoescaping (no ``|safe``, no template built from input), under the strict
page CSP with ``no-store``; visa values are shown as text, never as links. Authorization is the
services' (the same rules as the REST API and the CLI).

The views get everything from the :class:`~broker.dac.web.context.DacWeb` given to
:func:`pages_blueprint` (services, the browser session, the account facts), never from
``current_app``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request, url_for

import broker.dac.web.application_pages as ap
from broker.core.models import ACCEPTED_TERMS_AND_POLICIES
from broker.core.untrusted_json import peek_jws
from broker.dac.committees import ROLE_CHAIR
from broker.dac.errors import DacError
from broker.dac.grants import GrantFilter, GrantRequest, parse_time
from broker.dac.web.context import DacWeb
from broker.dac.web.forms import checked_post, failure, iso, login_redirect, redirect_303
from broker.web.pages import error_page, page

EXPIRING_DAYS = 30
MAX_HISTORY = 5000  # audit records of one dataset the page reads (newest first)
HISTORY_PAGE = 20


def dac_home(web: DacWeb) -> Response:
    session = web.load_session(request)
    if session is None or session.identity_id is None:
        return login_redirect()
    actor = session.identity_id
    svc = web.services
    admin = svc.directory.is_admin(actor)
    mine = svc.roles.committees_of(actor)
    if not admin and not mine:
        return error_page("Not allowed", "You are not a member of any data access committee.", 403)
    now = int(web.clock())
    committees = []
    for committee in svc.directory.committees():
        if not admin and committee.id not in mine:
            continue
        grants = svc.grants.list(actor, GrantFilter(dac=committee.id))
        datasets = sorted(set(committee.datasets) | {g.dataset for g in grants})
        committees.append(
            {
                "id": committee.id,
                "name": committee.name,
                "source": committee.source,
                "role": mine.get(committee.id, "admin"),
                "patterns": committee.patterns,
                "datasets": [
                    {"id": d, "live": sum(1 for g in grants if g.dataset == d and g.live(now))} for d in datasets
                ],
            }
        )
    expiring = svc.grants.list(actor, GrantFilter(expiring_within_days=EXPIRING_DAYS))
    return page(
        "dac_home.html",
        title="Data access committees",
        committees=committees,
        expiring=expiring,
        name=ap.namer(web),
        days=EXPIRING_DAYS,
        iso=iso,
        admin=admin,
    )


def dataset_page(web: DacWeb, dataset: str) -> Response:
    session = web.load_session(request)
    if session is None or session.identity_id is None:
        return login_redirect()
    actor = session.identity_id
    svc = web.services
    shown = request.args.get("show", "live")
    flt = {
        "live": GrantFilter(dataset=dataset, live=True),
        "all": GrantFilter(dataset=dataset),
        "expiring": GrantFilter(dataset=dataset, expiring_within_days=EXPIRING_DAYS),
    }.get(shown)
    if flt is None:
        return error_page("Cannot do that", "Unknown filter.", 400)
    try:
        grants = svc.grants.list(actor, flt)
        trail = svc.grants.audit_trail(actor, dataset, limit=MAX_HISTORY)
        applications = svc.applications.list(actor, dataset=dataset)
    except DacError as exc:
        return failure(exc)
    committee = svc.directory.governing(dataset)
    now = int(web.clock())
    name = ap.namer(web)
    history = HistoryFilter.from_args(request.args)
    if history is None:
        return error_page("Cannot do that", "Unknown history filter (outcome, from, to, page).", 400)
    shown_history, pages = history.apply(trail, name)
    admin = svc.directory.is_admin(actor)
    return page(
        "dac_dataset.html",
        title=f"Dataset {dataset}",
        dataset=dataset,
        committee=committee,
        grants=grants,
        applications=applications,
        history=shown_history,
        history_filter=history,
        pages=pages,
        shown=shown,
        iso=iso,
        now=now,
        name=name,
        csrf=session.csrf_token,
        can_grant=admin or (committee is not None and svc.roles.role(actor, committee.id) == ROLE_CHAIR),
        default_end=time.strftime("%Y-%m-%d", time.gmtime(now + 365 * 86400)),
    )


@dataclass(frozen=True)
class HistoryFilter:
    """The access history's filters and page (holder, outcome, date range), from the query string."""

    holder: str = ""
    outcome: str = ""
    start: str = ""
    end: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> HistoryFilter | None:
        outcome = args.get("outcome", "")
        if outcome not in ("", "allow", "deny", "decision"):
            return None
        try:
            number = int(args.get("page", "1"))
            for key in ("from", "to"):
                if args.get(key):
                    parse_time(args[key], key)
        except (ValueError, DacError):
            return None
        if not 1 <= number <= 10_000:
            return None
        return cls(args.get("holder", "")[:200].strip(), outcome, args.get("from", ""), args.get("to", ""), number)

    def apply(self, trail: list[dict[str, Any]], name: Callable[[str | None], str]) -> tuple[list[dict[str, Any]], int]:
        """The records of this page, and how many pages the filtered history has."""
        lo = parse_time(self.start, "from") if self.start else None
        hi = parse_time(self.end, "to") + 86400 if self.end else None
        wanted = self.holder.casefold()
        kept = []
        for rec in trail:
            event = rec["event"]
            holder = event.get("identity") or event.get("applicant") or event.get("actor") or ""
            if wanted and wanted not in str(holder).casefold() and wanted not in name(str(holder)).casefold():
                continue
            if self.outcome in ("allow", "deny") and event.get("outcome") != self.outcome:
                continue
            if self.outcome == "decision" and str(event.get("event", "")).startswith("gateway."):
                continue
            if (lo is not None and rec["at"] < lo) or (hi is not None and rec["at"] >= hi):
                continue
            kept.append({**rec, "holder": str(holder)})
        pages = max(1, (len(kept) + HISTORY_PAGE - 1) // HISTORY_PAGE)
        first = (min(self.page, pages) - 1) * HISTORY_PAGE
        return kept[first : first + HISTORY_PAGE], pages

    def link(self, page: int) -> dict[str, Any]:
        """The query of the same filters on another page."""
        query: dict[str, Any] = {"page": page}
        for key, value in (("holder", self.holder), ("outcome", self.outcome), ("from", self.start), ("to", self.end)):
            if value:
                query[key] = value
        return query


def grant_create(web: DacWeb, dataset: str) -> Response:
    checked = checked_post(web, f"grant:{dataset}")
    if isinstance(checked, Response):
        return checked
    _, actor = checked
    try:
        web.services.grants.grant(
            actor,
            GrantRequest(
                identity=request.form.get("identity", "").strip(),
                dataset=dataset,
                end=parse_time(request.form.get("end", ""), "end"),
                reason=request.form.get("reason", ""),
            ),
        )
    except DacError as exc:
        return failure(exc)
    return redirect_303(url_for("dac_pages.dataset_page", dataset=dataset))


def grant_revoke(web: DacWeb, grant_id: str) -> Response:
    checked = checked_post(web, f"revoke:{grant_id}")
    if isinstance(checked, Response):
        return checked
    _, actor = checked
    try:
        grant = web.services.grants.revoke(actor, grant_id, request.form.get("reason", ""))
    except DacError as exc:
        return failure(exc)
    return redirect_303(url_for("dac_pages.dataset_page", dataset=grant.dataset, show="all"))


def grant_renew(web: DacWeb, grant_id: str) -> Response:
    checked = checked_post(web, f"renew:{grant_id}")
    if isinstance(checked, Response):
        return checked
    _, actor = checked
    try:
        grant = web.services.grants.renew(
            actor, grant_id, parse_time(request.form.get("end", ""), "end"), request.form.get("reason", "")
        )
    except DacError as exc:
        return failure(exc)
    return redirect_303(url_for("dac_pages.dataset_page", dataset=grant.dataset))


# --------------------------------------------------------------------------- researcher pages


def decode_visa(token: str) -> dict[str, Any]:
    """What the page shows of one visa (read without checking: it is the user's own list)."""
    claims = peek_jws(token, 1) or {}
    found = claims.get("ga4gh_visa_v1")
    obj: dict[str, Any] = found if isinstance(found, dict) else {}
    exp = claims.get("exp")
    return {
        "type": str(obj.get("type", "?")),
        "value": str(obj.get("value", "")),
        "source": str(obj.get("source", "")),
        "by": str(obj.get("by", "")),
        "iss": str(claims.get("iss", "")),
        "exp": iso(exp) if isinstance(exp, int) else "",
        "raw": token,
    }


def my_visas(web: DacWeb) -> Response:
    session = web.load_session(request)
    if session is None or session.identity_id is None:
        return login_redirect()
    me = session.identity_id
    visas = [decode_visa(t) for t in web.visas_for(me)]
    records = web.services.registered.records_of(me, me)
    now = int(web.clock())
    accepted = any(r.visa_type == ACCEPTED_TERMS_AND_POLICIES and r.live(now) for r in records)
    return page(
        "my_visas.html",
        title="Your access and visas",
        identity=web.identity_of(me),
        identity_id=me,
        links=web.links_of(me),
        visas=visas,
        records=records,
        accepted=accepted,
        iso=iso,
        now=now,
        consents=web.consents_of(me),
        csrf=session.csrf_token,
        applications=web.services.applications.mine(me),
        grants=sorted(web.services.grants.grants_of(me, me), key=lambda g: g.granted_at, reverse=True),
        name=ap.namer(web),
    )


def accept_terms(web: DacWeb) -> Response:
    checked = checked_post(web, "accept-terms")
    if isinstance(checked, Response):
        return checked
    _, actor = checked
    try:
        web.services.registered.accept_terms(actor)
    except DacError as exc:
        return failure(exc)
    return redirect_303(url_for("dac_pages.my_visas"))


def _bound(web: DacWeb, view: Callable[..., Response]) -> Callable[..., Response]:
    """``view`` with ``web`` as its first argument, under the view's own name (the endpoint)."""

    def bound(**kwargs: Any) -> Response:
        return view(web, **kwargs)

    bound.__name__ = view.__name__
    return bound


def pages_blueprint(web: DacWeb) -> Blueprint:
    """The DAC member and researcher pages (they need the login blueprint for ``/login``)."""
    bp = Blueprint("dac_pages", __name__, template_folder="templates")
    bp.add_url_rule("/dac", view_func=_bound(web, dac_home), methods=["GET"])
    bp.add_url_rule("/dac/datasets/<path:dataset>", view_func=_bound(web, dataset_page), methods=["GET"])
    bp.add_url_rule("/dac/datasets/<path:dataset>/grants", view_func=_bound(web, grant_create), methods=["POST"])
    bp.add_url_rule("/dac/grants/<grant_id>/revoke", view_func=_bound(web, grant_revoke), methods=["POST"])
    bp.add_url_rule("/dac/grants/<grant_id>/renew", view_func=_bound(web, grant_renew), methods=["POST"])
    bp.add_url_rule("/account/visas", view_func=_bound(web, my_visas), methods=["GET"])
    bp.add_url_rule("/account/visas/accept-terms", view_func=_bound(web, accept_terms), methods=["POST"])
    for rule, view, method in (
        ("/account/datasets", ap.datasets_page, "GET"),
        ("/account/apply", ap.apply_page, "GET"),
        ("/account/apply", ap.apply_submit, "POST"),
        ("/account/applications/<application_id>", ap.my_application, "GET"),
        ("/account/applications/<application_id>/edit", ap.my_application_edit, "GET"),
        ("/account/applications/<application_id>/edit", ap.my_application_update, "POST"),
        ("/account/applications/<application_id>/comment", ap.my_application_comment, "POST"),
        ("/account/applications/<application_id>/withdraw", ap.my_application_withdraw, "POST"),
        ("/dac/applications", ap.dac_applications, "GET"),
        ("/dac/applications/<application_id>", ap.dac_application, "GET"),
        ("/dac/applications/<application_id>/comment", ap.dac_application_comment, "POST"),
        ("/dac/applications/<application_id>/<action>", ap.dac_application_decide, "POST"),
    ):
        bp.add_url_rule(rule, view_func=_bound(web, view), methods=[method])
    return bp
