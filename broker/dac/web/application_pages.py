"""Pages of the application workflow: the researcher applies and follows; the DAC reviews and decides.

Researcher (any signed-in identity):

- ``/account/datasets``: the datasets each DAC governs, each with an "Apply" link;
- ``/account/apply?datasets=...``: the DAC's form (the 403's ``apply`` link lands here); a
  refused answer re-shows the form with what was typed and each error beside its field;
- ``/account/applications/<id>``: state, decision or revocation reason, the grants it made with
  their end dates, the comment thread; withdraw; change and resubmit a returned application.

DAC members, chairs and site admins:

- ``/dac/applications``: the queue of their DACs' applications (filter by state);
- ``/dac/applications/<id>``: the answers, who applied (names; ids on hover), approvals so far,
  the thread, and comment / approve (with an end date) / return / reject / revoke forms.

The same rules as the API and the CLI hold (the services decide); the security of the forms is
that of :mod:`broker.dac.web.pages` (session, CSRF token bound to the action, same origin).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from flask import Response, request, url_for

from broker.dac.applications import Answers
from broker.dac.errors import DacError, ValidationError
from broker.dac.grants import parse_time
from broker.dac.records import APPLICATION_STATES, EDITABLE_STATES, OPEN_STATES, SUBMITTED, Application
from broker.dac.web.context import DacWeb, PageSession
from broker.dac.web.forms import checked_post, failure, iso, login_redirect, redirect_303
from broker.web.pages import error_page, page

DUO_LABELS = {
    "DUO:0000042": "General research use (GRU)",
    "DUO:0000006": "Health, medical or biomedical research (HMB)",
    "DUO:0000007": "Disease-specific research (DS)",
    "DUO:0000011": "Population origins or ancestry research (POA)",
}


def namer(web: DacWeb) -> Callable[[str | None], str]:
    """``name(identity id)``: the display name, else the e-mail, else the id (pages put the id on hover)."""
    cache: dict[str, str] = {}

    def name(identity_id: str | None) -> str:
        if not identity_id:
            return ""
        if identity_id not in cache:
            person = web.identity_of(identity_id)
            shown = (getattr(person, "display_name", "") or getattr(person, "email", "")) if person else ""
            cache[identity_id] = shown or identity_id
        return cache[identity_id]

    return name


def _session(web: DacWeb) -> PageSession | None:
    session = web.load_session(request)
    return session if session is not None and session.identity_id is not None else None


def _datasets_arg(raw: str) -> list[str]:
    return [d.strip() for d in raw.split(",") if d.strip()][:20]


def _answers_from_form() -> Answers:
    form = request.form
    return Answers(
        title=form.get("title", ""),
        purpose_codes=form.getlist("purpose_codes"),
        purpose_text=form.get("purpose_text", ""),
        institution=form.get("institution", ""),
        co_applicants=[e.strip() for e in form.get("co_applicants", "").replace(",", "\n").splitlines() if e.strip()],
        accepted_terms=form.getlist("accepted_terms"),
    )


def _values(answers: Answers | Application) -> dict[str, Any]:
    """What the form shows in its fields (the typed answers after a refusal, or the stored ones)."""
    return {
        "title": answers.title or "",
        "purpose_codes": list(answers.purpose_codes or ()),
        "purpose_text": answers.purpose_text or "",
        "institution": answers.institution or "",
        "co_applicants": "\n".join(answers.co_applicants or ()),
        "accepted_terms": list(answers.accepted_terms or ()),
    }


# --------------------------------------------------------------------------- researcher


def datasets_page(web: DacWeb) -> Response:
    session = _session(web)
    if session is None:
        return login_redirect()
    committees = [
        {"id": c.id, "name": c.name, "datasets": sorted(c.datasets), "patterns": c.patterns}
        for c in web.services.directory.committees()
    ]
    return page("apply_datasets.html", title="Apply for access", committees=committees)


def _form_page(
    web: DacWeb,
    session: PageSession,
    datasets: Sequence[str],
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    application: Application | None = None,
) -> Response:
    svc = web.services.applications
    try:
        committee = svc.committee_for(list(datasets))
    except DacError as exc:
        return failure(exc)
    settings = svc.settings_of(committee.id)
    purpose = "apply" if application is None else f"edit:{application.id}"
    return page(
        "apply_form.html",
        status=status,
        title="Apply for access",
        committee=committee,
        datasets=list(datasets),
        fields=settings.fields,
        labels={
            "title": "Project title",
            "purpose": "Research purpose",
            "institution": "Institution",
            "co_applicants": "Co-applicants",
            "terms": "Terms of use",
        },
        codes=[(c, DUO_LABELS.get(c, c)) for c in settings.purpose_codes],
        terms=svc.terms(committee.id, list(datasets)),
        required_approvals=settings.required_approvals,
        values=values,
        errors=errors,
        application=application,
        csrf_token=session.csrf_token(purpose),
    )


def apply_page(web: DacWeb) -> Response:
    session = _session(web)
    if session is None:
        return redirect_303(url_for("login.login_page", next=request.full_path.rstrip("?")))
    datasets = _datasets_arg(request.args.get("datasets", ""))
    if not datasets:
        return redirect_303(url_for("dac_pages.datasets_page"))
    return _form_page(web, session, datasets, _values(Answers()), {})


def apply_submit(web: DacWeb) -> Response:
    checked = checked_post(web, "apply")
    if isinstance(checked, Response):
        return checked
    session, actor = checked
    datasets = _datasets_arg(request.form.get("datasets", ""))
    answers = _answers_from_form()
    submit = request.form.get("action") != "draft"
    svc = web.services.applications
    try:
        svc.check(actor, datasets, answers, complete=submit)
        app = svc.create(actor, datasets, answers)
        if submit:
            app = svc.submit(actor, app.id)
    except ValidationError as exc:
        message = {k: v for k, v in exc.fields.items()} or {"form": exc.message}
        return _form_page(web, session, datasets, _values(answers), message, status=400)
    except DacError as exc:
        return failure(exc)
    return redirect_303(url_for("dac_pages.my_application", application_id=app.id))


def my_application(web: DacWeb, application_id: str) -> Response:
    session = _session(web)
    if session is None:
        return login_redirect()
    actor = session.identity_id
    svc = web.services
    try:
        app = svc.applications.get(actor, application_id)
        thread = svc.applications.comments(actor, app.id)
    except DacError as exc:
        return failure(exc)
    grants = [g for g in (svc.repository.grant(gid) for gid in app.grants) if g is not None]
    return page(
        "application_researcher.html",
        title=f"Application: {app.title or app.id}",
        app=app,
        thread=thread,
        grants=grants,
        name=namer(web),
        iso=iso,
        now=int(web.clock()),
        editable=app.state in EDITABLE_STATES and actor == app.applicant,
        open=app.state in OPEN_STATES and actor == app.applicant,
        csrf=session.csrf_token,
        required=svc.applications.settings_of(app.dac).required_approvals,
    )


def my_application_edit(web: DacWeb, application_id: str) -> Response:
    session = _session(web)
    if session is None:
        return login_redirect()
    try:
        app = web.services.applications.get(session.identity_id, application_id)
    except DacError as exc:
        return failure(exc)
    return _form_page(web, session, app.datasets, _values(app), {}, application=app)


def my_application_update(web: DacWeb, application_id: str) -> Response:
    checked = checked_post(web, f"edit:{application_id}")
    if isinstance(checked, Response):
        return checked
    session, actor = checked
    svc = web.services.applications
    answers = _answers_from_form()
    try:
        app = svc.get(actor, application_id)
        svc.check(actor, app.datasets, answers, complete=request.form.get("action") != "draft")
        app = svc.update(actor, application_id, answers)
        if request.form.get("action") != "draft":
            app = svc.submit(actor, app.id)
    except ValidationError as exc:
        current = web.services.repository.application(application_id)
        if current is None:
            return failure(exc)
        return _form_page(web, session, current.datasets, _values(answers), exc.fields, 400, current)
    except DacError as exc:
        return failure(exc)
    return redirect_303(url_for("dac_pages.my_application", application_id=app.id))


def _comment(web: DacWeb, application_id: str, back: str) -> Response:
    checked = checked_post(web, f"comment:{application_id}")
    if isinstance(checked, Response):
        return checked
    _, actor = checked
    try:
        web.services.applications.comment(actor, application_id, request.form.get("text", ""))
    except DacError as exc:
        return failure(exc)
    return redirect_303(url_for(back, application_id=application_id) + "#thread")


def my_application_comment(web: DacWeb, application_id: str) -> Response:
    return _comment(web, application_id, "dac_pages.my_application")


def my_application_withdraw(web: DacWeb, application_id: str) -> Response:
    checked = checked_post(web, f"withdraw:{application_id}")
    if isinstance(checked, Response):
        return checked
    _, actor = checked
    try:
        web.services.applications.withdraw(actor, application_id, request.form.get("reason", ""))
    except DacError as exc:
        return failure(exc)
    return redirect_303(url_for("dac_pages.my_application", application_id=application_id))


# --------------------------------------------------------------------------- DAC


def dac_applications(web: DacWeb) -> Response:
    session = _session(web)
    if session is None:
        return login_redirect()
    state = request.args.get("state") or None
    if state is not None and state not in APPLICATION_STATES:
        return error_page("Cannot do that", "Unknown state filter.", 400)
    try:
        found = web.services.applications.list(session.identity_id, state=state)
    except DacError as exc:
        return failure(exc)
    return page(
        "dac_applications.html",
        title="Applications",
        applications=found,
        state=state,
        states=[s for s in APPLICATION_STATES if s != "draft"],
        name=namer(web),
        iso=iso,
        required=lambda dac: web.services.applications.settings_of(dac).required_approvals,
    )


def dac_application(web: DacWeb, application_id: str) -> Response:
    session = _session(web)
    if session is None:
        return login_redirect()
    actor = session.identity_id
    svc = web.services
    try:
        app = svc.applications.get(actor, application_id)
        thread = svc.applications.comments(actor, app.id)
    except DacError as exc:
        return failure(exc)
    if not svc.applications.is_handler(actor, app):
        return redirect_303(url_for("dac_pages.my_application", application_id=app.id))
    now = int(web.clock())
    settings = svc.applications.settings_of(app.dac)
    grants = [g for g in (svc.repository.grant(gid) for gid in app.grants) if g is not None]
    return page(
        "application_dac.html",
        title=f"Application: {app.title or app.id}",
        app=app,
        thread=thread,
        grants=grants,
        name=namer(web),
        iso=iso,
        now=now,
        csrf=session.csrf_token,
        required=settings.required_approvals,
        may_decide=svc.applications.may_decide(actor, app) and app.state == SUBMITTED,
        already=actor in app.approvals,
        conflict=svc.applications.is_applicant(actor, app),
        default_end=time.strftime("%Y-%m-%d", time.gmtime(now + int(settings.default_grant_days * 86400))),
        codes=DUO_LABELS,
    )


def dac_application_comment(web: DacWeb, application_id: str) -> Response:
    return _comment(web, application_id, "dac_pages.dac_application")


def dac_application_decide(web: DacWeb, application_id: str, action: str) -> Response:
    if action not in ("approve", "reject", "return", "revoke"):
        return error_page("Not found", "No such action.", 404)
    checked = checked_post(web, f"app-{action}:{application_id}")
    if isinstance(checked, Response):
        return checked
    _, actor = checked
    svc = web.services.applications
    reason = request.form.get("reason", "")
    try:
        if action == "approve":
            svc.approve(actor, application_id, parse_time(request.form.get("end", ""), "end"), reason)
        elif action == "reject":
            svc.reject(actor, application_id, reason)
        elif action == "return":
            svc.send_back(actor, application_id, reason)
        else:
            svc.revoke(actor, application_id, reason)
    except DacError as exc:
        return failure(exc)
    return redirect_303(url_for("dac_pages.dac_application", application_id=application_id))
