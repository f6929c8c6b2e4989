"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

``post_logout_redirect_uri`` is followed only when it is exactly one of the client's
registered post-logout URIs and the client is known (from ``client_id`` or the
``id_token_hint`` audience); otherwise the answer is a page, never a redirect
(THREAT-MODEL OA-30, EPM i). Without a valid hint naming the logged-in user, the user
confirms with a CSRF-protected form, so a cross-site link cannot log anyone out.
"""

from __future__ import annotations

from flask import Response, request

from broker.login.session import BrowserSession
from broker.oidc.authorize import add_query, redirect_303
from broker.oidc.clients import find_client, logout_uri_registered
from broker.oidc.params import OversizedParameter, RepeatedParameter, single_values
from broker.oidc.tokens import InvalidToken, verify_signed
from broker.runtime import current_runtime
from broker.web.pages import error_page, page


def logout() -> Response:
    rt = current_runtime()
    source = request.form if request.method == "POST" else request.args
    try:
        params = single_values(source)
    except (RepeatedParameter, OversizedParameter) as exc:
        return error_page("Invalid logout request", str(exc))
    hint_claims = None
    if "id_token_hint" in params:
        try:
            hint_claims = verify_signed(rt.keyring, rt.settings, params["id_token_hint"], "JWT", verify_exp=False)
        except InvalidToken:
            return error_page("Invalid logout request", "id_token_hint is not an ID token we issued.")
    client_id = params.get("client_id")
    if hint_claims is not None:
        if client_id is not None and client_id != hint_claims.get("aud"):
            return error_page("Invalid logout request", "client_id does not match the id_token_hint.")
        client_id = hint_claims.get("aud") if isinstance(hint_claims.get("aud"), str) else None
    target = params.get("post_logout_redirect_uri")
    if target is not None:
        client = find_client(rt.settings, rt.store, client_id)
        if client is None or not logout_uri_registered(client, target):
            return error_page("Invalid logout request", "The address to return to is not registered.")
    session = BrowserSession.load(rt.settings, rt.store, request)
    confirmed = (
        request.method == "POST" and session is not None and session.csrf_ok("logout", request.form.get("csrf_token"))
    )
    hint_matches = session is not None and hint_claims is not None and hint_claims.get("sub") == session.identity_id
    if session is not None and session.identity_id is not None and not (confirmed or hint_matches):
        response = page("logout.html", csrf_token=session.csrf_token("logout"), params=params)
        return response
    if target is not None:
        extra = {"state": params["state"]} if "state" in params else {}
        response = redirect_303(add_query(target, extra) if extra else target)
    else:
        response = page("message.html", title="Logged out", message="You are logged out of the broker.")
    if session is not None:
        session.end(rt.settings, rt.store, response)
    return response
