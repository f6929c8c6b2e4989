"""The OP's Flask adapter: ``oidc_blueprint(op)`` turns HTTP into calls on one :class:`OpenIDProvider`.

Views read the request, call the provider and render its answer; they reach no global but
Flask's own request. Token-style requests are read strictly here: the body must be
``application/x-www-form-urlencoded`` with no parameter repeated (``resource`` and
``audience`` of the token exchange excepted) and nothing in the query. The access token of
a userinfo request is read by RFC 6750 2: the header or, for POST, the form body, never the
query, and exactly one of them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request
from werkzeug.datastructures import MultiDict

from broker.oidc.authorization import Outcome, Redirect, Refusal
from broker.oidc.device import Answered, DevicePrompt, UnknownCode
from broker.oidc.endpoints import normalize_user_code
from broker.oidc.errors import BearerError, OAuthError, no_store
from broker.oidc.logout import ConfirmLogout
from broker.oidc.params import OversizedParameter, RepeatedParameter, single_values
from broker.oidc.provider import OpenIDProvider
from broker.oidc.server import Answer, OAuthRequest
from broker.web.pages import error_page, page, redirect_303
from broker.web.rate_limit import RateLimited, client_address
from broker.web.session import BrowserSession

REPEATABLE = frozenset({"resource", "audience"})


def form_params() -> tuple[dict[str, str], MultiDict[str, str]]:
    """The single-valued form parameters of a token-style request (and the raw form), or ``invalid_request``."""
    if request.mimetype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "The body must be application/x-www-form-urlencoded.")
    raw = request.form.copy()
    for name in REPEATABLE:
        raw.poplist(name)
    try:
        params = single_values(raw)
    except (RepeatedParameter, OversizedParameter) as exc:
        raise OAuthError("invalid_request", str(exc)) from None
    if request.args:
        raise OAuthError("invalid_request", "Parameters belong in the body, not the query.")
    return params, request.form


def oauth_request(op: OpenIDProvider, path: str) -> OAuthRequest:
    params, raw = form_params()
    return OAuthRequest(
        request.method,
        op.endpoint_url(path),
        params,
        authorization=request.headers.get("Authorization"),
        raw=raw,
        address=client_address(request),
    )


def answer(result: Answer) -> Response:
    if isinstance(result.body, dict):
        response = jsonify(result.body)
    else:
        response = Response(result.body, mimetype="application/json" if result.body else None)
    response.status_code = result.status
    response.headers.update({k: v for k, v in result.headers.items() if k != "Content-Type"})
    return no_store(response)


def bearer_token() -> str:
    """The access token of a request (RFC 6750 2): header, or form body for POST; never the query."""
    if "access_token" in request.args:
        raise BearerError("invalid_request", "Access tokens are not accepted in the query string.", 400)
    headers = request.headers.getlist("Authorization")
    body_token = None
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        values = request.form.getlist("access_token")
        if len(values) > 1:
            raise BearerError("invalid_request", "access_token is repeated.", 400)
        body_token = values[0] if values else None
    if len(headers) > 1 or (headers and body_token is not None):
        raise BearerError("invalid_request", "Use exactly one way to send the access token.", 400)
    if headers:
        scheme, _, value = headers[0].strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise BearerError(None)
        return value.strip()
    if body_token:
        return body_token
    raise BearerError(None)


def oidc_blueprint(op: OpenIDProvider) -> Blueprint:
    """The OP's routes over ``op`` (a new blueprint per app; nothing at import time)."""
    bp = Blueprint("oidc", __name__, template_folder="../web/templates")
    sessions = op.sessions

    def render(outcome: Outcome, session: BrowserSession | None = None) -> Response:
        if isinstance(outcome, Redirect):
            response = redirect_303(outcome.location)
        elif isinstance(outcome, Refusal):
            response = error_page(outcome.title, outcome.message, outcome.status)
        else:
            response = page("consent.html", **asdict(outcome))
        if session is not None:
            sessions.save(session, response)
        return response

    @bp.get("/.well-known/openid-configuration", endpoint="discovery")
    def discovery() -> Response:
        response = jsonify(op.metadata)
        response.headers["Cache-Control"] = "public, max-age=300"
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    @bp.route("/authorize", methods=["GET", "POST"], endpoint="authorize")
    def authorize() -> Response:
        source = request.form if request.method == "POST" else request.args
        outcome, session = op.authorizations.start(source, sessions.load(request))
        return render(outcome, session)

    @bp.get("/authorize/continue", endpoint="continue_authorization")
    def continue_authorization() -> Response:
        return render(op.authorizations.resume(request.args.get("interaction", ""), sessions.load(request)))

    @bp.route("/consent", methods=["GET", "POST"], endpoint="consent")
    def consent() -> Response:
        session = sessions.load(request)
        if request.method == "GET":
            return render(op.authorizations.consent_page(request.args.get("interaction", ""), session))
        form = request.form
        outcome = op.authorizations.consent_decision(
            form.get("interaction", ""),
            session,
            form.get("csrf_token"),
            form.get("decision"),
            remember=form.get("remember") == "yes",
        )
        return render(outcome)

    @bp.post("/token", endpoint="token")
    def token() -> Response:
        return answer(op.token(oauth_request(op, "/token")))

    @bp.route("/userinfo", methods=["GET", "POST"], endpoint="userinfo")
    def userinfo() -> Response:
        return no_store(jsonify(op.userinfo(bearer_token())))

    @bp.post("/introspect", endpoint="introspect")
    def introspect() -> Response:
        return answer(op.introspect(oauth_request(op, "/introspect")))

    @bp.post("/revoke", endpoint="revoke")
    def revoke() -> Response:
        return answer(op.revoke(oauth_request(op, "/revoke")))

    @bp.post("/device_authorization", endpoint="device_authorization")
    def device_authorization() -> Response:
        return answer(op.device_authorization(oauth_request(op, "/device_authorization")))

    @bp.route("/logout", methods=["GET", "POST"], endpoint="logout")
    def logout_view() -> Response:
        session = sessions.load(request)
        source = request.form if request.method == "POST" else request.args
        outcome = op.logout(source, session, posted=request.method == "POST")
        if isinstance(outcome, Refusal):
            return error_page(outcome.title, outcome.message, outcome.status)
        if isinstance(outcome, ConfirmLogout):
            return page("logout.html", csrf_token=outcome.csrf_token, params=outcome.params)
        if outcome.location is not None:
            response = redirect_303(outcome.location)
        else:
            response = page("message.html", title="Logged out", message="You are logged out of the broker.")
        if session is not None:
            sessions.end(session, response)
        return response

    @bp.route("/device", methods=["GET", "POST"], endpoint="device_verify")
    def device_verify() -> Response:
        session = sessions.load(request)
        if session is None or session.identity_id is None:
            code = request.args.get("user_code", "")
            return redirect_303(
                "/login?" + urlencode({"next": "/device" + (f"?user_code={normalize_user_code(code)}" if code else "")})
            )
        if request.method == "GET":
            return device_page(session, user_code=request.args.get("user_code", "")[:20])
        decision = request.form.get("decision")
        typed = request.form.get("user_code", "")
        address = client_address(request)
        if decision is None:
            if not session.csrf_ok("device", request.form.get("csrf_token")):
                return refused()
            found = op.devices.lookup(session, typed, address)
            if isinstance(found, DevicePrompt):
                return page("device_consent.html", **asdict(found))
            return device_failure(session, found)
        if not session.csrf_ok(f"device:{normalize_user_code(typed)}", request.form.get("csrf_token")):
            return refused()
        done = op.devices.answer(session, typed, decision == "allow", address)
        if isinstance(done, Answered):
            message = "The device is connected; you can return to it." if done.approved else "The request was denied."
            return page("device.html", done=message, csrf_token="", user_code="")
        return device_failure(session, done)

    def device_page(session: BrowserSession, status: int = 200, **context: Any) -> Response:
        return page("device.html", status=status, csrf_token=session.csrf_token("device"), **context)

    def device_failure(session: BrowserSession, failure: UnknownCode | RateLimited) -> Response:
        if isinstance(failure, RateLimited):
            return failure.page()
        return device_page(session, status=400, user_code="", error="That code is unknown or expired.")

    def refused() -> Response:
        return error_page("Request refused", "The form was not sent from this page (CSRF check failed).", 403)

    return bp
