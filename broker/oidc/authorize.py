"""The authorization endpoint (OIDC Core 3.1.2, RFC 6749 4.1) and the consent step.

Order of checks (RFC 6749 4.1.2.1, THREAT-MODEL OA-01..OA-03): the client and the redirect
URI are validated first, by exact string comparison; if either is wrong the answer is an
HTML error page (400) and nothing is sent anywhere. Only then may an error be redirected,
always with ``error``, ``state`` (when sent) and ``iss`` (RFC 9207).

A valid request becomes an *interaction* (a ticket with a random id) bound to the browser
through the session's ``browser`` value; login and consent refer to it, and the code is
issued when it is consumed, so each interaction yields at most one code.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Response, redirect, request, url_for

from broker.errors import BrokerError
from broker.login.session import BrowserSession
from broker.oidc.clients import find_client, redirect_uri_registered
from broker.oidc.consent_withdrawal import now_ms
from broker.oidc.params import OversizedParameter, RepeatedParameter, scope_list, single_values
from broker.oidc.passwords import token_hash
from broker.oidc.pkce import valid_challenge
from broker.oidc.tokens import InvalidToken, verify_signed
from broker.oidc.visas import summarize
from broker.runtime import Runtime, current_runtime
from broker.store.base import Client, Consent
from broker.web.pages import error_page, page

INTERACTION = "interaction"
CODE = "code"
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
SCOPE_TEXT = {
    "openid": "your broker account identifier",
    "profile": "your name",
    "email": "your e-mail address",
    "ga4gh_passport_v1": "your GA4GH visas (listed below)",
}


@dataclass
class AuthorizationFailure(BrokerError):
    """An error to send back to the (validated) redirect URI."""

    status = 400
    code = "invalid_request"

    error: str
    description: str


def add_query(uri: str, params: dict[str, str]) -> str:
    """``uri`` with ``params`` appended to its query (registered URIs have no fragment)."""
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


def redirect_303(location: str) -> Response:
    response = redirect(location, code=303)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def error_redirect(redirect_uri: str, error: str, description: str, state: str | None) -> Response:
    """Send an error to the client: error, error_description, state (if any) and iss."""
    params = {"error": error, "error_description": description}
    if state is not None:
        params["state"] = state
    params["iss"] = current_runtime().settings.issuer
    return redirect_303(add_query(redirect_uri, params))


def authorize() -> Response:
    """GET or POST /authorize."""
    rt = current_runtime()
    source = request.form if request.method == "POST" else request.args
    for name in ("client_id", "redirect_uri"):
        if len([v for v in source.getlist(name) if v]) > 1:
            return error_page("Invalid request", f"The {name} parameter is repeated.")
    client_id = source.get("client_id") or None
    redirect_uri = source.get("redirect_uri") or None
    client = find_client(rt.settings, rt.store, client_id)
    if client is None:
        return error_page("Unknown application", "The application that sent you here is not registered.")
    if not redirect_uri_registered(client, redirect_uri):
        return error_page(
            "Invalid redirect address", "The application sent a redirect address that is not registered for it."
        )
    assert redirect_uri is not None
    state_values = [v for v in source.getlist("state") if v]
    state = state_values[0] if state_values else None
    try:
        try:
            params = single_values(source)
        except (RepeatedParameter, OversizedParameter) as exc:
            raise AuthorizationFailure("invalid_request", str(exc)) from None
        request_data = _validate(rt, client, params)
    except AuthorizationFailure as failure:
        return error_redirect(redirect_uri, failure.error, failure.description, state)
    request_data.update(client_id=client.client_id, redirect_uri=redirect_uri, state=state)

    session = BrowserSession.load(rt.settings, rt.store, request)
    now = int(time.time())
    prompt = request_data["prompt"]
    needs_login = session is None or session.identity_id is None or "login" in prompt
    if session is not None and session.identity_id is not None and not needs_login:
        max_age = request_data.get("max_age")
        if max_age is not None and now - int(session.data.get("auth_time", 0)) > max_age:
            needs_login = True
        hint_sub = request_data.get("hint_sub")
        if hint_sub is not None and hint_sub != session.identity_id:
            needs_login = True
    if needs_login and "none" in prompt:
        return error_redirect(redirect_uri, "login_required", "The user is not logged in.", state)
    session = session or BrowserSession.new()
    uid = secrets.token_urlsafe(24)
    request_data.update(browser=session.browser, created_at=now, force_login=needs_login)
    rt.store.put_ticket(INTERACTION, uid, request_data, rt.settings.login.interaction_lifetime_seconds)
    if needs_login:
        response = redirect_303(url_for("login.login_page", interaction=uid))
    else:
        response = _continue(session, uid, request_data)
    session.save(rt.settings, rt.store, response)
    return response


def _validate(rt: Any, client: Client, params: dict[str, str]) -> dict[str, Any]:
    """Every check after client and redirect URI; returns what the interaction keeps."""
    if "request" in params:
        raise AuthorizationFailure("request_not_supported", "Request objects are not supported.")
    if "request_uri" in params:
        raise AuthorizationFailure("request_uri_not_supported", "request_uri is not supported.")
    if "registration" in params:
        raise AuthorizationFailure("registration_not_supported", "registration is not supported.")
    response_type = params.get("response_type")
    if response_type is None:
        raise AuthorizationFailure("invalid_request", "response_type is required.")
    if response_type != "code":
        raise AuthorizationFailure("unsupported_response_type", "Only response_type=code is supported.")
    if "authorization_code" not in client.grant_types:
        raise AuthorizationFailure("unauthorized_client", "This client may not use the authorization code grant.")
    if params.get("response_mode", "query") != "query":
        raise AuthorizationFailure("invalid_request", "Only response_mode=query is supported.")
    scopes = scope_list(params.get("scope"))
    if "openid" not in scopes:
        raise AuthorizationFailure("invalid_scope", "The openid scope is required.")
    unknown = [s for s in scopes if s not in client.scopes]
    if unknown:
        raise AuthorizationFailure("invalid_scope", f"Scope not allowed for this client: {unknown[0]}.")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if method is not None and method != "S256":
        raise AuthorizationFailure("invalid_request", "code_challenge_method must be S256.")
    if challenge is not None:
        if method is None:
            raise AuthorizationFailure("invalid_request", "code_challenge_method=S256 is required with a challenge.")
        if not valid_challenge(challenge):
            raise AuthorizationFailure("invalid_request", "code_challenge is not an S256 challenge.")
    elif method is not None:
        raise AuthorizationFailure("invalid_request", "code_challenge_method without code_challenge.")
    elif client.public or rt.settings.oidc.require_pkce:
        raise AuthorizationFailure("invalid_request", "PKCE (code_challenge with S256) is required.")
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > 512:
        raise AuthorizationFailure("invalid_request", "nonce is longer than 512 characters.")
    prompt = scope_list(params.get("prompt"))
    if any(p not in PROMPTS for p in prompt) or ("none" in prompt and len(prompt) > 1):
        raise AuthorizationFailure("invalid_request", "Unsupported prompt value.")
    max_age: int | None = None
    if "max_age" in params:
        if not params["max_age"].isdigit() or len(params["max_age"]) > 9:
            raise AuthorizationFailure("invalid_request", "max_age must be a non-negative integer.")
        max_age = int(params["max_age"])
    hint_sub: str | None = None
    if "id_token_hint" in params:
        try:
            claims = verify_signed(rt.keyring, rt.settings, params["id_token_hint"], "JWT", verify_exp=False)
        except InvalidToken:
            raise AuthorizationFailure("invalid_request", "id_token_hint is not an ID token of ours.") from None
        if claims.get("aud") != client.client_id:
            raise AuthorizationFailure("invalid_request", "id_token_hint was issued to another client.")
        hint_sub = claims["sub"]
    return {
        "scope": list(scopes),
        "nonce": nonce,
        "code_challenge": challenge,
        "prompt": list(prompt),
        "max_age": max_age,
        "hint_sub": hint_sub,
    }


def continue_authorization() -> Response:
    """GET /authorize/continue?interaction=...: after login, go on to consent or the code."""
    rt = current_runtime()
    uid = request.args.get("interaction", "")
    session = BrowserSession.load(rt.settings, rt.store, request)
    data = _interaction(session, uid)
    if data is None or session is None:
        return error_page("Request expired", "This login request is unknown or has expired.")
    if session.identity_id is None:
        return redirect_303(url_for("login.login_page", interaction=uid))
    if data.get("force_login") and int(session.data.get("auth_time", 0)) < int(data["created_at"]):
        return redirect_303(url_for("login.login_page", interaction=uid))
    if data.get("hint_sub") is not None and data["hint_sub"] != session.identity_id:
        rt.store.consume_ticket(INTERACTION, uid)
        return error_redirect(
            data["redirect_uri"], "login_required", "Logged-in user differs from the hint.", data.get("state")
        )
    return _continue(session, uid, data)


def _interaction(session: BrowserSession | None, uid: str) -> dict[str, Any] | None:
    """The pending request ``uid`` if it belongs to this browser."""
    if session is None or not uid or len(uid) > 64:
        return None
    data = current_runtime().store.peek_ticket(INTERACTION, uid)
    if data is None or data.get("browser") != session.browser:
        return None
    return data


def _continue(session: BrowserSession, uid: str, data: dict[str, Any]) -> Response:
    rt = current_runtime()
    identity_id = session.identity_id
    assert identity_id is not None
    consent = rt.store.get_consent(identity_id, data["client_id"])
    covered = consent is not None and set(data["scope"]) <= set(consent.scopes)
    if covered and "consent" not in data["prompt"]:
        if rt.store.consume_ticket(INTERACTION, uid) is None:
            return error_page("Request expired", "This login request was already used.")
        return _issue_code(session, data)
    if "none" in data["prompt"]:
        rt.store.consume_ticket(INTERACTION, uid)
        return error_redirect(data["redirect_uri"], "consent_required", "Consent is required.", data.get("state"))
    return redirect_303(url_for("oidc.consent", interaction=uid))


def consent() -> Response:
    """GET shows the consent page; POST (CSRF-checked) records the decision."""
    rt = current_runtime()
    uid = (request.form if request.method == "POST" else request.args).get("interaction", "")
    session = BrowserSession.load(rt.settings, rt.store, request)
    data = _interaction(session, uid)
    if data is None or session is None or session.identity_id is None:
        return error_page("Request expired", "This consent request is unknown or has expired.")
    client = find_client(rt.settings, rt.store, data["client_id"])
    if client is None:
        return error_page("Unknown application", "The application is no longer registered.")
    purpose = f"consent:{uid}"
    if request.method == "GET":
        visas = None
        if "ga4gh_passport_v1" in data["scope"]:
            visas = summarize(rt.passport_visas(session.identity_id))
        identity = rt.store.get_identity(session.identity_id)
        return page(
            "consent.html",
            client_name=client.name,
            interaction=uid,
            csrf_token=session.csrf_token(purpose),
            scopes=[{"name": s, "text": SCOPE_TEXT.get(s, s)} for s in data["scope"]],
            visas=visas,
            user_name=(identity.display_name if identity and identity.display_name else session.identity_id),
        )
    if not session.csrf_ok(purpose, request.form.get("csrf_token")):
        return error_page("Request refused", "The form was not sent from this page (CSRF check failed).", 403)
    if rt.store.consume_ticket(INTERACTION, uid) is None:
        return error_page("Request expired", "This consent request was already answered.")
    if request.form.get("decision") != "allow":
        return error_redirect(data["redirect_uri"], "access_denied", "The user denied the request.", data.get("state"))
    if request.form.get("remember") == "yes":
        rt.store.put_consent(
            Consent(
                identity_id=session.identity_id,
                client_id=client.client_id,
                scopes=tuple(data["scope"]),
                granted_at=int(time.time()),
            )
        )
    return _issue_code(session, data)


def store_code(
    rt: Runtime,
    *,
    client_id: str,
    redirect_uri: str,
    scope: list[str],
    identity_id: str,
    auth_time: int,
    nonce: str | None = None,
    code_challenge: str | None = None,
    idp: str | None = None,
) -> str:
    """A new single-use code bound to everything the token request must match (kept by hash)."""
    code = secrets.token_urlsafe(32)
    record = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "nonce": nonce,
        "code_challenge": code_challenge,
        "identity_id": identity_id,
        "auth_time": auth_time,
        "idp": idp,
        "issued_ms": now_ms(),  # when the researcher authorized: consent withdrawal compares with it
    }
    rt.store.put_ticket(CODE, token_hash(code), record, rt.settings.oidc.code_lifetime_seconds)
    return code


def _issue_code(session: BrowserSession, data: dict[str, Any]) -> Response:
    """Issue the code of a finished interaction and redirect to the client with it."""
    rt = current_runtime()
    assert session.identity_id is not None
    code = store_code(
        rt,
        client_id=data["client_id"],
        redirect_uri=data["redirect_uri"],
        scope=data["scope"],
        identity_id=session.identity_id,
        auth_time=int(session.data.get("auth_time", 0)),
        nonce=data.get("nonce"),
        code_challenge=data.get("code_challenge"),
        idp=session.data.get("connector"),
    )
    params = {"code": code}
    if data.get("state") is not None:
        params["state"] = data["state"]
    params["iss"] = rt.settings.issuer
    return redirect_303(add_query(data["redirect_uri"], params))
