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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, request, url_for

from broker.core.models import ACCEPTED_TERMS_AND_POLICIES
from broker.core.untrusted_json import peek_jws
from broker.dac.errors import DacError
from broker.dac.grants import GrantFilter, GrantRequest, parse_time
from broker.dac.web.context import DacWeb, PageSession
from broker.web.pages import error_page, page

EXPIRING_DAYS = 30


def redirect_303(location: str) -> Response:
    """A 303 See Other after a form POST (never cached); ``location`` is one of our own ``url_for`` URLs."""
    return Response("", status=303, headers={"Location": location, "Cache-Control": "no-store", "Pragma": "no-cache"})


def _login_redirect() -> Response:
    return redirect_303(url_for("login.login_page", next=request.path))


def iso(ts: int | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _same_origin(issuer: str) -> bool:
    """UI-01: a state-changing request must come from one of our own pages.

    ``Sec-Fetch-Site`` (a header no page can set) decides when the browser sends it: our pages
    carry ``Referrer-Policy: no-referrer``, under which browsers send ``Origin: null`` even for
    same-origin form posts. Without it, ``Origin`` must be exactly ours (``null`` refused);
    with neither (older browsers, non-browser clients) the CSRF token alone decides.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    ours = urlsplit(issuer)
    return origin == f"{ours.scheme}://{ours.netloc}"


def _checked_post(web: DacWeb, purpose: str) -> tuple[PageSession, str] | Response:
    """The session and actor of a form POST, or the refusal page (nothing is changed)."""
    session = web.load_session(request)
    if session is None or session.identity_id is None:
        return error_page("Not logged in", "Log in first.", 401)
    if not _same_origin(web.issuer) or not session.csrf_ok(purpose, request.form.get("csrf_token")):
        return error_page("Request refused", "The form was not sent from this page (CSRF check failed).", 403)
    return session, session.identity_id


def _failure(exc: DacError) -> Response:
    title = {403: "Not allowed", 404: "Not found", 409: "Conflict"}.get(exc.status, "Cannot do that")
    detail = "; ".join(f"{k}: {v}" for k, v in exc.extra.get("fields", {}).items())
    return error_page(title, exc.message + (f" ({detail})" if detail else ""), exc.status)


# --------------------------------------------------------------------------- DAC member pages


def dac_home(web: DacWeb) -> Response:
    session = web.load_session(request)
    if session is None or session.identity_id is None:
        return _login_redirect()
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
        days=EXPIRING_DAYS,
        iso=iso,
        admin=admin,
    )


def dataset_page(web: DacWeb, dataset: str) -> Response:
    session = web.load_session(request)
    if session is None or session.identity_id is None:
        return _login_redirect()
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
        trail = svc.grants.audit_trail(actor, dataset, limit=100)
    except DacError as exc:
        return _failure(exc)
    committee = svc.directory.governing(dataset)
    now = int(web.clock())
    return page(
        "dac_dataset.html",
        title=f"Dataset {dataset}",
        dataset=dataset,
        committee=committee,
        grants=grants,
        trail=trail,
        shown=shown,
        iso=iso,
        now=now,
        csrf=session.csrf_token,
        default_end=time.strftime("%Y-%m-%d", time.gmtime(now + 365 * 86400)),
    )


def grant_create(web: DacWeb, dataset: str) -> Response:
    checked = _checked_post(web, f"grant:{dataset}")
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
        return _failure(exc)
    return redirect_303(url_for("dac_pages.dataset_page", dataset=dataset))


def grant_revoke(web: DacWeb, grant_id: str) -> Response:
    checked = _checked_post(web, f"revoke:{grant_id}")
    if isinstance(checked, Response):
        return checked
    _, actor = checked
    try:
        grant = web.services.grants.revoke(actor, grant_id, request.form.get("reason", ""))
    except DacError as exc:
        return _failure(exc)
    return redirect_303(url_for("dac_pages.dataset_page", dataset=grant.dataset, show="all"))


def grant_renew(web: DacWeb, grant_id: str) -> Response:
    checked = _checked_post(web, f"renew:{grant_id}")
    if isinstance(checked, Response):
        return checked
    _, actor = checked
    try:
        grant = web.services.grants.renew(
            actor, grant_id, parse_time(request.form.get("end", ""), "end"), request.form.get("reason", "")
        )
    except DacError as exc:
        return _failure(exc)
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
        return _login_redirect()
    me = session.identity_id
    visas = [decode_visa(t) for t in web.visas_for(me)]
    records = web.services.registered.records_of(me, me)
    now = int(web.clock())
    accepted = any(r.visa_type == ACCEPTED_TERMS_AND_POLICIES and r.live(now) for r in records)
    return page(
        "my_visas.html",
        title="Your visas",
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
    )


def accept_terms(web: DacWeb) -> Response:
    checked = _checked_post(web, "accept-terms")
    if isinstance(checked, Response):
        return checked
    _, actor = checked
    try:
        web.services.registered.accept_terms(actor)
    except DacError as exc:
        return _failure(exc)
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
    return bp
