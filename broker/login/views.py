"""Login pages: the connector list, local password login, the account page.

Every form carries a CSRF token bound to the session and to what the form acts on; every
redirect after a POST is 303 (RFC 9700 4.12); the session id is rotated at login.
"""

from __future__ import annotations

import re
import time

from flask import Blueprint, Response, request, url_for

from broker.login import local
from broker.login.session import BrowserSession
from broker.oidc.authorize import INTERACTION, redirect_303
from broker.runtime import current_runtime
from broker.web.pages import error_page, page

_SAFE_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.?=&-]*")


def safe_next(value: str | None) -> str | None:
    """A same-origin relative path, else None (THREAT-MODEL OA-31).

    Only ``/`` followed by a character other than ``/`` or ``\\``, and only letters, digits and
    ``/ _ - . ? = &``: no scheme, no authority, no percent-escapes, no control characters.
    """
    if not value or len(value) > 500 or not _SAFE_PATH.fullmatch(value):
        return None
    return value


def complete_login(
    session: BrowserSession, identity_id: str, connector_id: str, interaction: str | None, next_path: str | None = None
) -> Response:
    """Rotate the session id, record the login, and go on with the pending request."""
    rt = current_runtime()
    session.rotate(rt.store)
    session.set("identity_id", identity_id)
    session.set("auth_time", int(time.time()))
    session.set("connector", connector_id)
    if interaction:
        target = url_for("oidc.continue_authorization", interaction=interaction)
    else:
        target = safe_next(next_path) or url_for("login.account")
    response = redirect_303(target)
    session.save(rt.settings, rt.store, response)
    rt.store.audit_append({"event": "login", "identity_id": identity_id, "connector": connector_id}, int(time.time()))
    return response


def _render_login(
    session: BrowserSession, interaction: str, next_path: str, error: str | None = None, status: int = 200
) -> Response:
    rt = current_runtime()
    client_name = None
    if interaction:
        data = rt.store.peek_ticket(INTERACTION, interaction)
        if data is None or data.get("browser") != session.browser:
            return error_page("Request expired", "This login request is unknown or has expired.")
        client_name = data.get("client_id")
    connectors = rt.settings.login.connectors
    response = page(
        "login.html",
        status=status,
        error=error,
        interaction=interaction,
        client_name=client_name,
        local_connectors=[c for c in connectors if c.kind == "local"],
        upstream_connectors=[c for c in connectors if c.kind == "oidc"],
        csrf=lambda cid: session.csrf_token(f"login:{cid}:{interaction}"),
    )
    if next_path:
        session.set("next", next_path)
    session.save(rt.settings, rt.store, response)
    return response


def login_page() -> Response:
    rt = current_runtime()
    session = BrowserSession.load_or_new(rt.settings, rt.store, request)
    return _render_login(session, request.args.get("interaction", ""), safe_next(request.args.get("next")) or "")


def local_login(connector_id: str) -> Response:
    rt = current_runtime()
    connector = next((c for c in rt.settings.login.connectors if c.id == connector_id and c.kind == "local"), None)
    if connector is None:
        return error_page("Unknown login method", "This login method does not exist.", 404)
    session = BrowserSession.load(rt.settings, rt.store, request)
    interaction = request.form.get("interaction", "")
    if session is None or not session.csrf_ok(f"login:{connector_id}:{interaction}", request.form.get("csrf_token")):
        return error_page("Request refused", "The form was not sent from this page (CSRF check failed).", 403)
    from broker.oidc.rate_limit import (
        LOGIN_FAILURES,
        LOGIN_FAILURES_PER_ADDRESS,
        RateLimited,
        RateLimiter,
        client_address,
        limit_key,
    )

    # Password guessing (OA-18) costs one scrypt per try: failures are counted per user and per address.
    limiter = RateLimiter(rt.store)
    keys = (
        (LOGIN_FAILURES, limit_key(connector_id, request.form.get("username", ""), client_address())),
        (LOGIN_FAILURES_PER_ADDRESS, limit_key(client_address())),
    )
    try:
        limiter.check_all(keys)
    except RateLimited as exc:
        return exc.page()
    identity_id = local.check_password(
        rt.store, connector_id, request.form.get("username", ""), request.form.get("password", "")
    )
    if identity_id is None:
        limiter.hit_all(keys)
        rt.store.audit_append({"event": "login.failed", "connector": connector_id}, int(time.time()))
        return _render_login(session, interaction, "", error="Wrong user name or password.", status=401)
    return complete_login(session, identity_id, connector_id, interaction or None, session.data.get("next"))


def account() -> Response:
    rt = current_runtime()
    session = BrowserSession.load(rt.settings, rt.store, request)
    if session is None or session.identity_id is None:
        return redirect_303(url_for("login.login_page", next="/account"))
    identity = rt.store.get_identity(session.identity_id)
    return page(
        "account.html",
        identity_id=session.identity_id,
        user_name=identity.display_name if identity else session.identity_id,
        links=rt.store.links_of(session.identity_id),
        consents=rt.store.consents_of(session.identity_id),
        link_connectors=[c for c in rt.settings.login.connectors if c.kind == "oidc"],
        csrf=session.csrf_token,
    )


def withdraw_consent() -> Response:
    rt = current_runtime()
    session = BrowserSession.load(rt.settings, rt.store, request)
    client_id = request.form.get("client_id", "")
    if session is None or session.identity_id is None:
        return error_page("Not logged in", "Log in first.", 401)
    if not session.csrf_ok(f"withdraw:{client_id}", request.form.get("csrf_token")):
        return error_page("Request refused", "The form was not sent from this page (CSRF check failed).", 403)
    from broker.oidc.consent_withdrawal import withdraw_consent as withdraw

    # Withdrawing consent also ends every grant the client holds for this researcher (OA-20).
    withdraw(rt.settings, rt.store, session.identity_id, client_id)
    return redirect_303(url_for("login.account"))


def blueprint() -> Blueprint:
    """The login blueprint (templates shared with the OP pages)."""
    bp = Blueprint("login", __name__, template_folder="../web/templates")
    bp.add_url_rule("/login", view_func=login_page, methods=["GET"])
    bp.add_url_rule("/login/local/<connector_id>", view_func=local_login, methods=["POST"])
    bp.add_url_rule("/account", view_func=account, methods=["GET"])
    bp.add_url_rule("/account/consents/withdraw", view_func=withdraw_consent, methods=["POST"])
    from broker.login import oidc as upstream

    bp.add_url_rule(
        "/login/upstream/<connector_id>", endpoint="upstream_start", view_func=upstream.start, methods=["POST"]
    )
    bp.add_url_rule(
        "/login/callback/<connector_id>", endpoint="upstream_callback", view_func=upstream.callback, methods=["GET"]
    )
    return bp
