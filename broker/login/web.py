"""The login area's Flask adapter: ``login_blueprint(login)`` turns HTTP into calls on one :class:`LoginArea`.

Pages: the connector list (``/login``), local password login, the upstream start and
callback, the account page and consent withdrawal. Views reach no global but Flask's own
request; templates are shared with the OP pages (``broker/web/templates``).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, request

from broker.login.oidc import UpstreamLogins
from broker.login.service import Failed, Go, LoginArea, Refused, safe_next
from broker.web.pages import error_page, page, redirect_303
from broker.web.rate_limit import RateLimited, client_address
from broker.web.session import BrowserSession


def login_blueprint(login: LoginArea) -> Blueprint:
    """The login routes over ``login`` (a new blueprint per app; nothing at import time)."""
    bp = Blueprint("login", __name__, template_folder="../web/templates")
    sessions = login.sessions
    upstream = UpstreamLogins(login)

    def render(outcome: Go | Refused | Failed, session: BrowserSession | None = None) -> Response:
        if isinstance(outcome, Go):
            response = redirect_303(outcome.location)
        elif isinstance(outcome, Refused):
            response = error_page(outcome.title, outcome.message, outcome.status)
        else:
            response = page(
                "login_failed.html",
                status=outcome.status,
                title=outcome.title,
                message=outcome.message,
                back_url=outcome.back_url,
                back_text=outcome.back_text,
            )
        if session is not None:
            sessions.save(session, response)
        return response

    def login_form(
        session: BrowserSession, interaction: str, next_path: str = "", error: str | None = None, status: int = 200
    ) -> Response:
        context = login.login_page_context(session, interaction)
        if isinstance(context, Refused):
            return render(context)
        response = page("login.html", status=status, error=error, **context)
        if next_path:
            session.remember_next(next_path)
        sessions.save(session, response)
        return response

    @bp.get("/login", endpoint="login_page")
    def login_page() -> Response:
        session = sessions.load_or_new(request)
        return login_form(session, request.args.get("interaction", ""), safe_next(request.args.get("next")) or "")

    @bp.post("/login/local/<connector_id>", endpoint="local_login")
    def local_login(connector_id: str) -> Response:
        session = sessions.load(request)
        form: dict[str, Any] = request.form.to_dict()
        outcome = login.local_login(connector_id, session, form, client_address(request), int(time.time()))
        if isinstance(outcome, RateLimited):
            return outcome.page()
        if outcome is None:
            assert session is not None
            return login_form(session, form.get("interaction", ""), error="Wrong user name or password.", status=401)
        return render(outcome, session)

    @bp.post("/login/upstream/<connector_id>", endpoint="upstream_start")
    def upstream_start(connector_id: str) -> Response:
        return render(upstream.start(connector_id, sessions.load(request), request.form, int(time.time())))

    @bp.get("/login/callback/<connector_id>", endpoint="upstream_callback")
    def upstream_callback(connector_id: str) -> Response:
        session = sessions.load(request)
        return render(upstream.callback(connector_id, session, request.args, int(time.time())), session)

    @bp.get("/account", endpoint="account")
    def account() -> Response:
        session = sessions.load(request)
        if session is None or session.identity_id is None:
            return redirect_303("/login?next=/account")
        return page("account.html", csrf=session.csrf_token, **login.account(session.identity_id))

    @bp.post("/account/consents/withdraw", endpoint="withdraw_consent")
    def withdraw_consent() -> Response:
        session = sessions.load(request)
        return render(
            login.withdraw_consent(session, request.form.get("client_id", ""), request.form.get("csrf_token"))
        )

    return bp
