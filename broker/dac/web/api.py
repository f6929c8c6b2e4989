"""The DAC REST API (``/api/dac/``), our permissions API and the OpenAPI 3.1 document.

Every route is declared once in :data:`ROUTES` with its access policy; the blueprint and the
OpenAPI document (``GET /api/openapi.json``) are both built from that table, so a route cannot
exist without a declared policy and a description (THREAT-MODEL UI-08).

Policies:

- ``dac``: a bearer access token of ours (``web.authenticate(request) -> Principal``, see
  :func:`broker.dac.web.auth.token_authenticator`) carrying the ``dac`` scope. No or a bad token:
  ``401 invalid_token``; a token without the scope: ``403 insufficient_scope`` (RFC 6750 3.1,
  GA-12). The token's ``sub`` is the actor; what the actor may do is decided by the services
  (403 ``forbidden``, nothing changed, audited).
- ``client``: an OAuth client authenticating itself (HTTP Basic or ``private_key_jwt``, the
  methods of :mod:`broker.oidc.client_auth`) whose registered scopes include
  ``ga4gh_permissions``; for services and other brokers (REMS #2631: no privileged account).
- ``public``: the OpenAPI document.

Input (UI-01, UI-12, GA-13): request bodies must be ``application/json`` (else 415), parsed
strictly (no duplicate names, bounded depth), objects with only the documented members: a body
that carries ``iss``, ``source``, ``by``, ``asserted``, ``exp``, ``sub``, ``conditions``,
``dac``, ``granted_by``... is refused with a field error, never silently used.

The views get everything from the :class:`~broker.dac.web.context.DacWeb` given to
:func:`api_blueprint` (services, authentication, ``visas_for``), never from ``current_app``.
Revocation (GA-14) is the services' business: their ``on_revoke`` hooks evict this process's
caches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import BaseConverter

from broker.core.jose import JoseError, loads_strict
from broker.core.models import PASSPORT_CLAIM
from broker.dac import audit
from broker.dac.applications import Answers, application_to_json, comment_to_json
from broker.dac.errors import Forbidden, ValidationError
from broker.dac.grants import GrantFilter, GrantRequest, grant_to_json, parse_time
from broker.dac.members import Member
from broker.dac.records import Grant, RegisteredAccess
from broker.dac.web.context import DacWeb, Principal
from broker.errors import BrokerError
from broker.oidc.scopes import DAC_SCOPE, PERMISSIONS_SCOPE

MAX_BODY_DEPTH = 8
MAX_CSV_BYTES = 2 * 1024 * 1024
Policy = Literal["dac", "client", "public"]


# --------------------------------------------------------------------------- helpers for views


def _actor() -> str | None:
    principal: Principal = request.environ["broker.dac.principal"]
    return principal.identity


def _now(web: DacWeb) -> int:
    return int(web.clock())


def _body(allowed: set[str], required: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The JSON object of the request, with only ``allowed`` members and every ``required`` one.

    A request without a body (no Content-Length, or 0) where no member is required is an empty
    object whatever its Content-Type: an optional body may be left out, never answered 415.
    """
    if not required and not request.content_length and not request.headers.get("Transfer-Encoding"):
        return {}
    if request.mimetype != "application/json":
        raise BrokerError("Send the body as application/json.", status=415, code="unsupported_media_type")
    raw = request.get_data(cache=False)
    try:
        data = loads_strict(raw, MAX_BODY_DEPTH, "request body") if raw.strip() else {}
    except JoseError as exc:
        raise BrokerError(
            f"The body is not acceptable JSON: {exc.detail}", status=400, code="invalid_request"
        ) from None
    if not isinstance(data, dict):
        raise BrokerError("The body must be a JSON object.", status=400, code="invalid_request")
    fields = {str(k)[:64]: "not accepted here" for k in data if k not in allowed}
    fields.update({k: "required" for k in sorted(required) if k not in data})
    if fields:
        raise ValidationError("The body has members that are not accepted or lacks required ones.", fields)
    return data


def _text(data: dict[str, Any], name: str, default: str = "") -> str:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", {name: "not a string"})
    return value


def _json(data: Any, status: int = 200) -> Response:
    response = jsonify(data)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _member_json(m: Member) -> dict[str, Any]:
    return m.to_json()


def _registered_json(web: DacWeb, r: RegisteredAccess) -> dict[str, Any]:
    return {
        "id": r.id,
        "type": r.visa_type,
        "by": r.by,
        "identity": r.identity_id,
        "dac": r.dac or None,
        "granted_by": r.granted_by,
        "granted_at": r.granted_at,
        "start": r.start,
        "end": r.end,
        "revoked_at": r.revoked_at,
        "revoked_by": r.revoked_by,
        "live": r.live(_now(web)),
    }


def _grant(web: DacWeb, g: Grant) -> dict[str, Any]:
    return grant_to_json(g, _now(web))


def _bool_arg(name: str) -> bool | None:
    value = request.args.get(name)
    if value is None:
        return None
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValidationError(f"{name} must be true or false", {name: "not a boolean"})


def _float_arg(name: str) -> float | None:
    value = request.args.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValidationError(f"{name} must be a number", {name: "not a number"}) from None
    if not 0 <= number <= 36500:
        raise ValidationError(f"{name} is out of range", {name: "out of range"})
    return number


# --------------------------------------------------------------------------- views


def me(web: DacWeb) -> Response:
    svc = web.services
    actor = _actor()
    return _json(
        {
            "identity": actor,
            "admin": svc.directory.is_admin(actor),
            "committees": svc.roles.committees_of(actor),
        }
    )


def committees(web: DacWeb) -> Response:
    svc = web.services
    actor = _actor()
    mine = svc.roles.committees_of(actor)
    admin = svc.directory.is_admin(actor)
    return _json(
        [
            {
                "id": c.id,
                "name": c.name,
                "source": c.source,
                "datasets": sorted(c.datasets),
                "dataset_patterns": list(c.patterns),
                "role": mine.get(c.id),
            }
            for c in svc.directory.committees()
            if admin or c.id in mine
        ]
    )


def members_list(web: DacWeb, dac: str) -> Response:
    return _json([_member_json(m) for m in web.services.members.list(_actor(), dac)])


def members_add(web: DacWeb, dac: str) -> Response:
    data = _body({"identity", "role", "reason"}, {"identity"})
    member = web.services.members.add(
        _actor(), dac, _text(data, "identity"), _text(data, "role", "member"), _text(data, "reason")
    )
    return _json(_member_json(member), 201)


def members_remove(web: DacWeb, dac: str, identity: str) -> Response:
    data = _body({"reason"}) if request.content_length else {}
    web.services.members.remove(_actor(), dac, identity, _text(data, "reason"))
    return _json({"removed": identity, "dac": dac})


def grants_list(web: DacWeb) -> Response:
    flt = GrantFilter(
        dataset=request.args.get("dataset"),
        dac=request.args.get("dac"),
        identity=request.args.get("identity"),
        live=_bool_arg("live"),
        expiring_within_days=_float_arg("expiring_days"),
    )
    return _json([_grant(web, g) for g in web.services.grants.list(_actor(), flt)])


def grants_create(web: DacWeb) -> Response:
    data = _body({"identity", "dataset", "start", "end", "reason"}, {"identity", "dataset", "end"})
    grant = web.services.grants.grant(
        _actor(),
        GrantRequest(
            identity=_text(data, "identity"),
            dataset=_text(data, "dataset"),
            end=data["end"],
            start=data.get("start"),
            reason=_text(data, "reason"),
        ),
    )
    return _json(_grant(web, grant), 201)


def grants_get(web: DacWeb, grant_id: str) -> Response:
    return _json(_grant(web, web.services.grants.get(_actor(), grant_id)))


def grants_renew(web: DacWeb, grant_id: str) -> Response:
    data = _body({"end", "reason"}, {"end"})
    return _json(_grant(web, web.services.grants.renew(_actor(), grant_id, data["end"], _text(data, "reason"))))


def grants_revoke(web: DacWeb, grant_id: str) -> Response:
    data = _body({"reason"}, {"reason"})
    return _json(_grant(web, web.services.grants.revoke(_actor(), grant_id, _text(data, "reason"))))


def grants_import(web: DacWeb) -> Response:
    if request.mimetype != "text/csv":
        raise BrokerError("Send the file as text/csv.", status=415, code="unsupported_media_type")
    raw = request.get_data(cache=False)
    if len(raw) > MAX_CSV_BYTES:
        raise BrokerError(f"The file is larger than {MAX_CSV_BYTES} bytes.", status=413, code="too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the file is not UTF-8", {"file": "not UTF-8"}) from None
    made = web.services.grants.import_csv(_actor(), text)
    return _json({"imported": len(made), "grants": [_grant(web, g) for g in made]}, 201)


def dataset_audit(web: DacWeb, dataset: str) -> Response:
    return _json(web.services.grants.audit_trail(_actor(), dataset))


def my_grants(web: DacWeb) -> Response:
    actor = _actor()
    return _json([_grant(web, g) for g in web.services.grants.grants_of(actor, actor or "")])


def registered_list(web: DacWeb) -> Response:
    actor = _actor()
    identity = request.args.get("identity") or actor or ""
    return _json([_registered_json(web, r) for r in web.services.registered.records_of(actor, identity)])


def registered_accept(web: DacWeb) -> Response:
    _body(set())
    return _json(_registered_json(web, web.services.registered.accept_terms(_actor())), 201)


def registered_status(web: DacWeb) -> Response:
    data = _body({"identity", "dac", "reason"}, {"identity"})
    dac = data.get("dac")
    if dac is not None and not isinstance(dac, str):
        raise ValidationError("dac must be a string", {"dac": "not a string"})
    found = web.services.registered.grant_status(_actor(), _text(data, "identity"), dac, _text(data, "reason"))
    return _json(_registered_json(web, found), 201)


def registered_vouch(web: DacWeb) -> Response:
    data = _body({"identity", "reason"}, {"identity"})
    found = web.services.registered.vouch(_actor(), _text(data, "identity"), _text(data, "reason"))
    return _json(_registered_json(web, found), 201)


def registered_revoke(web: DacWeb, record_id: str) -> Response:
    data = _body({"reason"})
    return _json(_registered_json(web, web.services.registered.revoke(_actor(), record_id, _text(data, "reason"))))


ANSWER_FIELDS = {"title", "purpose_codes", "purpose_text", "institution", "co_applicants", "accepted_terms"}


def _answers(data: dict[str, Any]) -> Answers:
    return Answers(**{name: data[name] for name in ANSWER_FIELDS if name in data})


def _application(web: DacWeb, app: Any) -> dict[str, Any]:
    """An application with the names of the people on it (ids stay for links and tools)."""
    out = application_to_json(app)
    names = web.services.applications
    out["applicant_name"] = names_of(web, [app.applicant])[app.applicant]
    out["approver_names"] = list(names_of(web, list(app.approvals)).values())
    out["required_approvals"] = names.settings_of(app.dac).required_approvals
    return out


def names_of(web: DacWeb, ids: list[str]) -> dict[str, str]:
    """identity id -> the name pages and answers show for it (display name, else e-mail, else the id)."""
    out: dict[str, str] = {}
    for identity in ids:
        person = web.identity_of(identity)
        name = getattr(person, "display_name", "") or getattr(person, "email", "") if person is not None else ""
        out[identity] = name or identity
    return out


def _list_arg(name: str) -> list[str]:
    value = request.args.get(name, "")
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ValidationError(f"{name} is required (comma-separated)", {name: "required"})
    return items


def applications_form(web: DacWeb) -> Response:
    """The form a researcher fills in for ``datasets``: the DAC, its fields, purpose codes and terms."""
    svc = web.services.applications
    datasets = _list_arg("datasets")
    committee = svc.committee_for(datasets)
    settings = svc.settings_of(committee.id)
    return _json(
        {
            "dac": committee.id,
            "dac_name": committee.name,
            "datasets": datasets,
            "required_approvals": settings.required_approvals,
            "fields": [{"name": f.name, "label": f.label, "required": f.required} for f in settings.fields],
            "purpose_codes": list(settings.purpose_codes),
            "terms": [
                {
                    "dataset": t.dataset,
                    "version": t.version,
                    "title": t.title,
                    "text": t.text,
                    "url": t.url,
                    "accept": t.token,
                }
                for t in svc.terms(committee.id, datasets)
            ],
        }
    )


def applications_create(web: DacWeb) -> Response:
    data = _body(ANSWER_FIELDS | {"datasets", "submit"}, {"datasets"})
    submit = data.get("submit", False)
    if not isinstance(submit, bool):
        raise ValidationError("submit must be true or false", {"submit": "not a boolean"})
    svc = web.services.applications
    app = svc.create(_actor(), data["datasets"], _answers(data))
    if submit:
        app = svc.submit(_actor(), app.id)
    return _json(_application(web, app), 201)


def applications_list(web: DacWeb) -> Response:
    found = web.services.applications.list(
        _actor(), dac=request.args.get("dac"), state=request.args.get("state"), dataset=request.args.get("dataset")
    )
    return _json([_application(web, a) for a in found])


def my_applications(web: DacWeb) -> Response:
    return _json([_application(web, a) for a in web.services.applications.mine(_actor())])


def applications_get(web: DacWeb, application_id: str) -> Response:
    svc = web.services.applications
    app = svc.get(_actor(), application_id)
    out = _application(web, app)
    thread = svc.comments(_actor(), app.id)
    names = names_of(web, sorted({c.author for c in thread}))
    out["comments"] = [{**comment_to_json(c), "author_name": names[c.author]} for c in thread]
    return _json(out)


def applications_update(web: DacWeb, application_id: str) -> Response:
    data = _body(ANSWER_FIELDS)
    return _json(_application(web, web.services.applications.update(_actor(), application_id, _answers(data))))


def applications_submit(web: DacWeb, application_id: str) -> Response:
    _body(set())
    return _json(_application(web, web.services.applications.submit(_actor(), application_id)))


def applications_withdraw(web: DacWeb, application_id: str) -> Response:
    data = _body({"reason"}) if request.content_length else {}
    app = web.services.applications.withdraw(_actor(), application_id, _text(data, "reason"))
    return _json(_application(web, app))


def applications_comment(web: DacWeb, application_id: str) -> Response:
    data = _body({"text"}, {"text"})
    made = web.services.applications.comment(_actor(), application_id, _text(data, "text"))
    return _json(comment_to_json(made), 201)


def applications_approve(web: DacWeb, application_id: str) -> Response:
    data = _body({"end", "reason"}, {"end"})
    end = parse_time(data["end"], "end")
    app = web.services.applications.approve(_actor(), application_id, end, _text(data, "reason"))
    return _json(_application(web, app))


def applications_reject(web: DacWeb, application_id: str) -> Response:
    data = _body({"reason"}, {"reason"})
    return _json(_application(web, web.services.applications.reject(_actor(), application_id, _text(data, "reason"))))


def applications_return(web: DacWeb, application_id: str) -> Response:
    data = _body({"reason"}, {"reason"})
    app = web.services.applications.send_back(_actor(), application_id, _text(data, "reason"))
    return _json(_application(web, app))


def applications_revoke(web: DacWeb, application_id: str) -> Response:
    data = _body({"reason"}, {"reason"})
    return _json(_application(web, web.services.applications.revoke(_actor(), application_id, _text(data, "reason"))))


def people_search(web: DacWeb) -> Response:
    """People by name, e-mail, id or linked identity, for DAC members and site admins (who to grant, who applied)."""
    actor = _actor()
    svc = web.services
    if not (svc.directory.is_admin(actor) or svc.roles.committees_of(actor)):
        audit.denied(svc.repository, _now(web), "people.search", actor)
        raise Forbidden("Only DAC members and site admins look people up.")
    query = request.args.get("q", "")
    if not 2 <= len(query.strip()) <= 200:
        raise ValidationError("q must be 2 to 200 characters", {"q": "2 to 200 characters"})
    found = web.search_people(query)
    return _json([{"id": p.id, "name": p.display_name, "email": p.email} for p in found])


def permissions(web: DacWeb, user: str) -> Response:
    """Our visas for ``user`` in the REMS / ELIXIR permissions API shape."""
    return _json({PASSPORT_CLAIM: list(web.visas_for(user))})


def openapi(web: DacWeb) -> Response:
    response = jsonify(openapi_document(web.issuer))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# --------------------------------------------------------------------------- the route table


@dataclass(frozen=True)
class Route:
    """One route: Flask rule, method, view, access policy, and what the OpenAPI document says."""

    rule: str
    method: str
    view: Callable[..., Response]
    policy: Policy
    summary: str
    body: str | None = None  # name of a request schema in COMPONENTS, or "csv"
    query: tuple[str, ...] = ()
    ok: int = 200
    response: str = "Object"  # name of a response schema in COMPONENTS
    errors: tuple[int, ...] = field(default=(400, 401, 403))


D = "/api/dac"
ROUTES: tuple[Route, ...] = (
    Route(f"{D}/me", "GET", me, "dac", "Who the token acts as: DAC roles and admin flag", response="Me"),
    Route(
        f"{D}/committees",
        "GET",
        committees,
        "dac",
        "The DACs you sit on (all for a site admin)",
        response="CommitteeList",
    ),
    Route(
        f"{D}/committees/<dac>/members",
        "GET",
        members_list,
        "dac",
        "Members of a DAC",
        response="MemberList",
        errors=(401, 403, 404),
    ),
    Route(
        f"{D}/committees/<dac>/members",
        "POST",
        members_add,
        "dac",
        "Add a member (chair or site admin)",
        body="MemberRequest",
        ok=201,
        response="Member",
        errors=(400, 401, 403, 404, 415),
    ),
    Route(
        f"{D}/committees/<dac>/members/<identity>",
        "DELETE",
        members_remove,
        "dac",
        "Remove a member (chair or site admin)",
        body="ReasonOptional",
        response="Object",
        errors=(400, 401, 403, 404, 415),
    ),
    Route(
        f"{D}/grants",
        "GET",
        grants_list,
        "dac",
        "Grants you may see, filtered",
        query=("dataset", "dac", "identity", "live", "expiring_days"),
        response="GrantList",
        errors=(400, 401, 403, 404),
    ),
    Route(
        f"{D}/grants",
        "POST",
        grants_create,
        "dac",
        "Grant a researcher access to a dataset",
        body="GrantRequest",
        ok=201,
        response="Grant",
        errors=(400, 401, 403, 409, 415),
    ),
    Route(
        f"{D}/grants/import",
        "POST",
        grants_import,
        "dac",
        "Import grants from CSV, all or nothing",
        body="csv",
        ok=201,
        response="ImportResult",
        errors=(400, 401, 403, 409, 413, 415),
    ),
    Route(
        f"{D}/grants/<grant:grant_id>", "GET", grants_get, "dac", "One grant", response="Grant", errors=(401, 403, 404)
    ),
    Route(
        f"{D}/grants/<grant:grant_id>/renew",
        "POST",
        grants_renew,
        "dac",
        "Give a grant a new end",
        body="RenewRequest",
        response="Grant",
        errors=(400, 401, 403, 404, 409, 415),
    ),
    Route(
        f"{D}/grants/<grant:grant_id>/revoke",
        "POST",
        grants_revoke,
        "dac",
        "Revoke a grant with a reason (a revoked grant is answered as it is)",
        body="ReasonRequired",
        response="Grant",
        errors=(400, 401, 403, 404, 415),
    ),
    Route(
        f"{D}/datasets/<path:dataset>/audit",
        "GET",
        dataset_audit,
        "dac",
        "Audit trail of a dataset (grants and accesses), newest first",
        response="AuditList",
    ),
    Route(f"{D}/my/grants", "GET", my_grants, "dac", "Your own grants (researcher)", response="GrantList"),
    Route(
        f"{D}/registered",
        "GET",
        registered_list,
        "dac",
        "Registered-access records (yours, or any for admins)",
        query=("identity",),
        response="RegisteredList",
    ),
    Route(
        f"{D}/registered/accept",
        "POST",
        registered_accept,
        "dac",
        "Accept the registered-access terms yourself (by: self)",
        body="Empty",
        ok=201,
        response="Registered",
        errors=(400, 401, 403, 415),
    ),
    Route(
        f"{D}/registered/status",
        "POST",
        registered_status,
        "dac",
        "Grant ResearcherStatus (by: so) as a site admin or DAC member",
        body="StatusRequest",
        ok=201,
        response="Registered",
        errors=(400, 401, 403, 415),
    ),
    Route(
        f"{D}/registered/vouch",
        "POST",
        registered_vouch,
        "dac",
        "Vouch for a researcher (by: peer); you must hold ResearcherStatus",
        body="VouchRequest",
        ok=201,
        response="Registered",
        errors=(400, 401, 403, 415),
    ),
    Route(
        f"{D}/registered/<record_id>/revoke",
        "POST",
        registered_revoke,
        "dac",
        "Revoke a registered-access record",
        body="ReasonOptional",
        response="Registered",
        errors=(400, 401, 403, 404, 415),
    ),
    Route(
        f"{D}/applications/form",
        "GET",
        applications_form,
        "dac",
        "The application form for datasets of one DAC: fields, purpose codes, terms to accept",
        query=("datasets",),
        response="ApplicationForm",
    ),
    Route(
        f"{D}/applications",
        "POST",
        applications_create,
        "dac",
        "Start an application (a draft; submit: true sends it at once)",
        body="ApplicationRequest",
        ok=201,
        response="Application",
        errors=(400, 401, 403, 409, 415),
    ),
    Route(
        f"{D}/applications",
        "GET",
        applications_list,
        "dac",
        "Applications to the DACs you sit on (all for a site admin), newest first",
        query=("dac", "state", "dataset"),
        response="ApplicationList",
        errors=(400, 401, 403, 404),
    ),
    Route(
        f"{D}/my/applications",
        "GET",
        my_applications,
        "dac",
        "Your applications, and those naming your e-mail as co-applicant",
        response="ApplicationList",
    ),
    Route(
        f"{D}/applications/<application_id>",
        "GET",
        applications_get,
        "dac",
        "One application with its comment thread (applicant side and its DAC)",
        response="Application",
        errors=(401, 403, 404),
    ),
    Route(
        f"{D}/applications/<application_id>",
        "PATCH",
        applications_update,
        "dac",
        "Change the answers of a draft or returned application (the applicant)",
        body="ApplicationAnswers",
        response="Application",
        errors=(400, 401, 403, 404, 409, 415),
    ),
    Route(
        f"{D}/applications/<application_id>/submit",
        "POST",
        applications_submit,
        "dac",
        "Submit a complete draft or returned application to the DAC (the applicant)",
        body="Empty",
        response="Application",
        errors=(400, 401, 403, 404, 409, 415),
    ),
    Route(
        f"{D}/applications/<application_id>/withdraw",
        "POST",
        applications_withdraw,
        "dac",
        "Withdraw an undecided application (the applicant)",
        body="ReasonOptional",
        response="Application",
        errors=(400, 401, 403, 404, 409, 415),
    ),
    Route(
        f"{D}/applications/<application_id>/comments",
        "POST",
        applications_comment,
        "dac",
        "Comment on an application (applicant side or its DAC)",
        body="CommentRequest",
        ok=201,
        response="Comment",
        errors=(400, 401, 403, 404, 415),
    ),
    Route(
        f"{D}/applications/<application_id>/approve",
        "POST",
        applications_approve,
        "dac",
        "Approve until end; the last required approval makes the grants (not on your own application)",
        body="ApproveRequest",
        response="Application",
        errors=(400, 401, 403, 404, 409, 415),
    ),
    Route(
        f"{D}/applications/<application_id>/reject",
        "POST",
        applications_reject,
        "dac",
        "Reject a submitted application with a reason the applicant sees",
        body="ReasonRequired",
        response="Application",
        errors=(400, 401, 403, 404, 409, 415),
    ),
    Route(
        f"{D}/applications/<application_id>/return",
        "POST",
        applications_return,
        "dac",
        "Return a submitted application for changes, with a reason",
        body="ReasonRequired",
        response="Application",
        errors=(400, 401, 403, 404, 409, 415),
    ),
    Route(
        f"{D}/applications/<application_id>/revoke",
        "POST",
        applications_revoke,
        "dac",
        "Revoke the grants of an approved application and close it, with a reason the researcher sees",
        body="ReasonRequired",
        response="Application",
        errors=(400, 401, 403, 404, 409, 415),
    ),
    Route(
        f"{D}/people",
        "GET",
        people_search,
        "dac",
        "People by name, e-mail, id or linked identity (DAC members and site admins)",
        query=("q",),
        response="PeopleList",
    ),
    Route(
        "/api/permissions/<path:user>",
        "GET",
        permissions,
        "client",
        "A user's visas from this broker (REMS / ELIXIR permissions API shape)",
        response="Permissions",
        errors=(401, 403, 429),
    ),
    Route("/api/openapi.json", "GET", openapi, "public", "This document", errors=()),
)


def _guard(route: Route, web: DacWeb) -> Callable[..., Response]:
    """The view bound to ``web`` and wrapped with its route's policy (authentication and scope)."""

    def view(**kwargs: Any) -> Response:
        if route.policy == "dac":
            principal = web.authenticate(request)
            if DAC_SCOPE not in principal.scopes or principal.identity is None:
                raise BrokerError(
                    f"This API needs a token with the {DAC_SCOPE!r} scope.",
                    status=403,
                    code="insufficient_scope",
                    headers={
                        "WWW-Authenticate": f'Bearer realm="dac", error="insufficient_scope", scope="{DAC_SCOPE}"'
                    },
                )
            request.environ["broker.dac.principal"] = principal
        elif route.policy == "client":
            principal = web.authenticate_client(request)
            if PERMISSIONS_SCOPE not in principal.scopes:
                raise BrokerError(
                    f"This client is not registered for the {PERMISSIONS_SCOPE!r} scope.",
                    status=403,
                    code="insufficient_scope",
                )
            request.environ["broker.dac.principal"] = principal
        return route.view(web, **kwargs)

    view.__name__ = route.view.__name__
    return view


class GrantIdConverter(BaseConverter):
    """A grant id segment, never ``import``: ``/api/dac/grants/import`` is the import route alone, so its
    ``Allow`` header (OPTIONS, 405) does not also claim the GET of ``/api/dac/grants/<grant_id>``."""

    regex = "(?!import(?:/|$))[^/]+"


def _add_converters(state: BlueprintSetupState) -> None:
    state.app.url_map.converters.setdefault("grant", GrantIdConverter)


def api_blueprint(web: DacWeb) -> Blueprint:
    """The DAC REST API, the permissions API and the OpenAPI document, every route from :data:`ROUTES`."""
    bp = Blueprint("dac_api", __name__)
    bp.record_once(_add_converters)
    for route in ROUTES:
        bp.add_url_rule(
            route.rule,
            endpoint=f"{route.view.__name__}_{route.method.lower()}",
            view_func=_guard(route, web),
            methods=[route.method],
        )
    return bp


# --------------------------------------------------------------------------- OpenAPI 3.1


def openapi_path(rule: str) -> str:
    """``/a/<x>/<path:y>`` -> ``/a/{x}/{y}``."""
    out = []
    for part in rule.split("/"):
        if part.startswith("<") and part.endswith(">"):
            out.append("{" + part[1:-1].split(":")[-1] + "}")
        else:
            out.append(part)
    return "/".join(out)


#: Text: JSON bodies with a NUL character in a string are refused (the strict JSON reader), so say so.
_STR = {"type": "string", "pattern": "^[^\\u0000]*$"}
_INT = {"type": "integer"}
_TIME = {
    "oneOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
    ]
}
_GRANT = {
    "type": "object",
    "properties": {
        "id": _STR,
        "identity": _STR,
        "dataset": _STR,
        "dac": _STR,
        "granted_by": _STR,
        "granted_at": _INT,
        "start": _INT,
        "end": _INT,
        "reason": _STR,
        "revoked_at": {"type": ["integer", "null"]},
        "revoked_by": {"type": ["string", "null"]},
        "revoke_reason": {"type": ["string", "null"]},
        "live": {"type": "boolean"},
    },
    "required": ["id", "identity", "dataset", "dac", "start", "end", "live"],
}
_REGISTERED = {
    "type": "object",
    "properties": {
        "id": _STR,
        "type": _STR,
        "by": {"enum": ["self", "so", "peer"]},
        "identity": _STR,
        "dac": {"type": ["string", "null"]},
        "start": _INT,
        "end": _INT,
        "live": {"type": "boolean"},
    },
}
_MEMBER = {
    "type": "object",
    "properties": {
        "dac": _STR,
        "identity": _STR,
        "role": {"enum": ["member", "chair"]},
        "origin": {"enum": ["settings", "store"]},
    },
}


_STRINGS = {"type": "array", "items": _STR}
_ANSWERS: dict[str, Any] = {
    "title": {"type": "string", "maxLength": 200},
    "purpose_codes": {"type": "array", "items": {"type": "string", "pattern": "^DUO:[0-9]{7}$"}, "maxItems": 10},
    "purpose_text": {"type": "string", "maxLength": 4000},
    "institution": {"type": "string", "maxLength": 200},
    "co_applicants": {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": 20},
    "accepted_terms": _STRINGS,
}
_APPLICATION = {
    "type": "object",
    "properties": {
        "id": _STR,
        "dac": _STR,
        "datasets": _STRINGS,
        "applicant": _STR,
        "applicant_name": _STR,
        "state": {"enum": ["draft", "submitted", "returned", "approved", "rejected", "withdrawn", "closed"]},
        "title": _STR,
        "purpose_codes": _STRINGS,
        "purpose_text": _STR,
        "institution": _STR,
        "co_applicants": _STRINGS,
        "accepted_terms": _STRINGS,
        "approvals": _STRINGS,
        "required_approvals": _INT,
        "decision_reason": _STR,
        "closed_reason": _STR,
        "grants": _STRINGS,
        "comments": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["id", "dac", "datasets", "applicant", "state"],
}


def _closed(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


COMPONENTS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"error": _STR, "message": _STR, "fields": {"type": "object"}, "lines": {"type": "array"}},
        "required": ["error", "message"],
    },
    "Object": {"type": "object"},
    "Empty": _closed({}, []),
    "Me": {
        "type": "object",
        "properties": {"identity": _STR, "admin": {"type": "boolean"}, "committees": {"type": "object"}},
    },
    "CommitteeList": {"type": "array", "items": {"type": "object"}},
    "Member": _MEMBER,
    "MemberList": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
    "MemberRequest": _closed({"identity": _STR, "role": {"enum": ["member", "chair"]}, "reason": _STR}, ["identity"]),
    "Grant": _GRANT,
    "GrantList": {"type": "array", "items": {"$ref": "#/components/schemas/Grant"}},
    "GrantRequest": _closed(
        {
            "identity": _STR,
            "dataset": {"type": "string", "maxLength": 128},
            "start": _TIME,
            "end": _TIME,
            "reason": {"type": "string", "maxLength": 1000},
        },
        ["identity", "dataset", "end"],
    ),
    "RenewRequest": _closed({"end": _TIME, "reason": _STR}, ["end"]),
    "ReasonRequired": _closed({"reason": {"type": "string", "minLength": 1, "maxLength": 1000}}, ["reason"]),
    "ReasonOptional": _closed({"reason": {"type": "string", "maxLength": 1000}}, []),
    "ImportResult": {
        "type": "object",
        "properties": {"imported": _INT, "grants": {"type": "array", "items": {"$ref": "#/components/schemas/Grant"}}},
    },
    "AuditList": {
        "type": "array",
        "items": {"type": "object", "properties": {"seq": _INT, "at": _INT, "event": {"type": "object"}}},
    },
    "Registered": _REGISTERED,
    "RegisteredList": {"type": "array", "items": {"$ref": "#/components/schemas/Registered"}},
    "StatusRequest": _closed({"identity": _STR, "dac": _STR, "reason": _STR}, ["identity"]),
    "VouchRequest": _closed({"identity": _STR, "reason": _STR}, ["identity"]),
    "PeopleList": {
        "type": "array",
        "items": {"type": "object", "properties": {"id": _STR, "name": _STR, "email": _STR}},
    },
    "ApplicationForm": {
        "type": "object",
        "properties": {
            "dac": _STR,
            "datasets": {"type": "array", "items": _STR},
            "required_approvals": _INT,
            "fields": {"type": "array", "items": {"type": "object"}},
            "purpose_codes": {"type": "array", "items": _STR},
            "terms": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Application": _APPLICATION,
    "ApplicationList": {"type": "array", "items": {"$ref": "#/components/schemas/Application"}},
    "ApplicationAnswers": _closed(_ANSWERS, []),
    "ApplicationRequest": _closed(
        {
            **_ANSWERS,
            "datasets": {"type": "array", "items": {"type": "string", "maxLength": 128}, "minItems": 1, "maxItems": 20},
            "submit": {"type": "boolean"},
        },
        ["datasets"],
    ),
    "ApproveRequest": _closed({"end": _TIME, "reason": {"type": "string", "maxLength": 1000}}, ["end"]),
    "CommentRequest": _closed({"text": {"type": "string", "minLength": 1, "maxLength": 4000}}, ["text"]),
    "Comment": {
        "type": "object",
        "properties": {"id": _STR, "author": _STR, "at": _INT, "text": _STR, "side": {"enum": ["applicant", "dac"]}},
    },
    "Permissions": _closed({PASSPORT_CLAIM: {"type": "array", "items": _STR}}, [PASSPORT_CLAIM]),
}
QUERY = {
    "dataset": _STR,
    "dac": _STR,
    "identity": _STR,
    "live": {"type": "boolean"},
    "expiring_days": {"type": "number", "minimum": 0, "maximum": 36500},
    "datasets": {"type": "string"},
    "q": {"type": "string", "minLength": 2, "maxLength": 200},
    "state": {"enum": ["draft", "submitted", "returned", "approved", "rejected", "withdrawn", "closed"]},
}


def openapi_document(server: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`ROUTES`."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        path = openapi_path(route.rule)
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": _STR}
            for name in (p[1:-1] for p in path.split("/") if p.startswith("{"))
        ]
        params += [{"name": q, "in": "query", "required": False, "schema": QUERY[q]} for q in route.query]
        op: dict[str, Any] = {
            "operationId": f"{route.view.__name__}_{route.method.lower()}",
            "summary": route.summary,
            "responses": {
                str(route.ok): {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.response}"}}},
                }
            },
        }
        for status in route.errors:
            op["responses"][str(status)] = {
                "description": "Error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        if params:
            op["parameters"] = params
        if route.body == "csv":
            op["requestBody"] = {"required": True, "content": {"text/csv": {"schema": _STR}}}
        elif route.body is not None:
            op["requestBody"] = {
                "required": route.body not in ("ReasonOptional", "Empty"),
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.body}"}}},
            }
        op["security"] = {"dac": [{"bearer": [DAC_SCOPE]}], "client": [{"clientBasic": []}], "public": []}[route.policy]
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "ga4gh-broker DAC and permissions API", "version": "1"},
        "servers": [{"url": server.rstrip("/") or "/"}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": f"Our access token with the {DAC_SCOPE!r} scope",
                },
                "clientBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": f"OAuth client credentials, registered for {PERMISSIONS_SCOPE!r}",
                },
            },
        },
    }
