"""The ``oidc`` connector: log a researcher in at an upstream OpenID Provider, or link one more identity.

``POST /login/upstream/<connector>`` (a form on the login page, or on the account page with
``link=yes``) starts an authorization code flow at the upstream; the upstream sends the
browser back to ``GET /login/callback/<connector>``, one redirect URI per connector (RFC 9700
4.4.2.2, so a response can only come back to the connector that asked for it).

Binding and single use (THREAT-MODEL RP-01, RP-02): ``state``, ``nonce`` and the PKCE S256
verifier are fresh random values kept in one ticket (keyed by a hash of ``state``) that also
names the browser (the session's ``browser`` value), the connector, the upstream issuer and
the pending downstream request. The callback consumes that ticket before anything else: an
unknown or used ``state``, another browser's ticket or another connector's ticket ends the
request with a 400 page and nothing is sent to any upstream.

Then, in order (any failure aborts the login, EPM h; see :func:`_abort`):

1. ``iss`` (RFC 9207): required when the upstream advertises
   ``authorization_response_iss_parameter_supported``, and when present always exactly the
   issuer the ticket names, checked before the ``error`` or ``code`` is looked at;
2. an ``error`` from the upstream ends the login with ``access_denied``; its
   ``error_description`` is never shown, logged or passed on (RP-09);
3. the code is redeemed at the token endpoint with the PKCE verifier and our client
   authentication (bounded exchange, RP-10); the answer must be a JSON object with
   ``token_type`` Bearer, an ``access_token`` and an ``id_token``;
4. the ID token is verified (:mod:`broker.login.id_token`, RP-03, RP-06);
5. userinfo, when the upstream has it, is fetched and must name the same ``sub`` (RP-04);
6. the account is the one linked to the upstream (iss, sub), or a new one; never found by
   e-mail (RP-08). When linking, (iss, sub) joins the logged-in account unless it belongs to
   another one (then a 409 page and nothing changes);
7. what the upstream said is recorded for visa minting: its eduPersonScopedAffiliation
   values (AffiliationAndRole, ``by: system``, source ``affiliation_source`` or the upstream
   issuer) and, with ``relay_passport``, the visas of its userinfo ``ga4gh_passport_v1``
   that our trust configuration accepts, kept byte for byte;
8. the session id is rotated and the pending authorization request goes on.

An aborted login creates no session login: with a pending downstream request the browser
goes back to the client with ``error=access_denied`` (``temporarily_unavailable`` when the
upstream misbehaved or was unreachable), ``state`` and ``iss``; otherwise an error page.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from flask import Response, request, url_for
from werkzeug.datastructures import MultiDict

from broker.core.models import PASSPORT_CLAIM
from broker.errors import BrokerError
from broker.login import accounts, claims
from broker.login.discovery import DiscoveryError, UpstreamMetadata, limits_of
from broker.login.id_token import IdTokenError, verify_id_token
from broker.login.session import BrowserSession
from broker.login.settings import ConnectorSettings
from broker.login.upstream_http import UpstreamHttpError, exchange, require_json
from broker.login.upstreams import current_upstreams
from broker.login.views import complete_login
from broker.oidc.authorize import INTERACTION, add_query, error_redirect, redirect_303
from broker.oidc.passwords import token_hash
from broker.oidc.pkce import s256
from broker.oidc.visas import record_material
from broker.runtime import Runtime, current_runtime
from broker.web.pages import error_page, page

log = logging.getLogger("broker.login")

TICKET = "upstream_login"
_STATE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_CODE = re.compile(r"[\x21-\x7e]{1,2048}")
_BEARER = re.compile(r"[A-Za-z0-9\-._~+/]{1,8192}=*")
ACCESS_DENIED = "access_denied"
UNAVAILABLE = "temporarily_unavailable"
DESCRIPTIONS = {
    ACCESS_DENIED: "Login at the home organisation failed.",
    UNAVAILABLE: "The home organisation's login service is not available.",
}


@dataclass
class LoginAborted(BrokerError):
    """The upstream login cannot go on: ``error`` for the client, ``reason`` for the audit log."""

    status = 400
    code = "login_aborted"

    error: str
    reason: str
    detail: str = ""


@dataclass
class UpstreamResult:
    """What a completed upstream login told us (every part verified)."""

    sub: str
    claims: dict[str, Any]  # ID token claims, overlaid by userinfo claims
    asserted: int
    relayed: list[str] = field(default_factory=list)


def callback_url(rt: Runtime, connector_id: str) -> str:
    """Our redirect URI at the upstream for this connector (register it there)."""
    return f"{rt.settings.issuer.rstrip('/')}/login/callback/{connector_id}"


def _connector(rt: Runtime, connector_id: str) -> ConnectorSettings | None:
    return next((c for c in rt.settings.login.connectors if c.id == connector_id and c.kind == "oidc"), None)


def _refused() -> Response:
    return error_page("Request refused", "The form was not sent from this page (CSRF check failed).", 403)


# --------------------------------------------------------------------------- start


def start(connector_id: str) -> Response:
    """POST /login/upstream/<connector>: send the browser to the upstream's authorization endpoint."""
    rt = current_runtime()
    connector = _connector(rt, connector_id)
    if connector is None:
        return error_page("Unknown login method", "This login method does not exist.", 404)
    session = BrowserSession.load(rt.settings, rt.store, request)
    linking = request.form.get("link") == "yes"
    interaction = "" if linking else request.form.get("interaction", "")
    purpose = f"link:{connector_id}" if linking else f"login:{connector_id}:{interaction}"
    if session is None or not session.csrf_ok(purpose, request.form.get("csrf_token")):
        return _refused()
    if linking and session.identity_id is None:
        return error_page("Not logged in", "Log in first, then link another identity from your account page.", 401)
    if interaction:
        data = rt.store.peek_ticket(INTERACTION, interaction) if len(interaction) <= 64 else None
        if data is None or data.get("browser") != session.browser:
            return error_page("Request expired", "This login request is unknown or has expired.")
    try:
        metadata = current_upstreams().metadata(connector)
    except DiscoveryError as exc:
        log.warning("upstream %s unusable: %s", connector_id, exc)
        rt.store.audit_append(
            {"event": "login.unavailable", "connector": connector_id, "reason": exc.reason}, int(time.time())
        )
        back = url_for("login.login_page", interaction=interaction) if interaction else url_for("login.login_page")
        return page(
            "login_failed.html",
            status=503,
            title="Login not available",
            message=f"Logging in with {connector.name or connector.id} is not available right now.",
            back_url=url_for("login.account") if linking else back,
            back_text="Back to your account" if linking else "Choose another way to log in",
        )
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)
    redirect_uri = callback_url(rt, connector_id)
    rt.store.put_ticket(
        TICKET,
        token_hash(state),
        {
            "connector": connector_id,
            "browser": session.browser,
            "issuer": metadata.issuer,
            "nonce": nonce,
            "verifier": verifier,
            "redirect_uri": redirect_uri,
            "interaction": interaction,
            "link_to": session.identity_id if linking else None,
            "created_at": int(time.time()),
        },
        rt.settings.login.interaction_lifetime_seconds,
    )
    scopes = list(connector.scopes) if "openid" in connector.scopes else ["openid", *connector.scopes]
    params = {
        "response_type": "code",
        "client_id": str(connector.client_id),
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "nonce": nonce,
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
    }
    if linking:
        params["prompt"] = "login"  # the researcher proves the second identity now, not from an old session
    return redirect_303(add_query(metadata.authorization_endpoint, params))


# --------------------------------------------------------------------------- callback


def callback(connector_id: str) -> Response:
    """GET /login/callback/<connector>: the upstream's authorization response."""
    rt = current_runtime()
    connector = _connector(rt, connector_id)
    if connector is None:
        return error_page("Unknown login method", "This login method does not exist.", 404)
    session = BrowserSession.load(rt.settings, rt.store, request)
    states = request.args.getlist("state")
    ticket = None
    if session is not None and len(states) == 1 and _STATE.fullmatch(states[0]):
        ticket = rt.store.consume_ticket(TICKET, token_hash(states[0]))
    if (
        session is None
        or ticket is None
        or ticket.get("browser") != session.browser
        or ticket.get("connector") != connector_id
    ):
        rt.store.audit_append(
            {"event": "login.failed", "connector": connector_id, "reason": "unknown_state"}, int(time.time())
        )
        return error_page(
            "Login response not expected",
            "This login response does not belong to a login started in this browser, or it was already used.",
            400,
        )
    try:
        result = _complete_upstream(rt, connector, ticket, request.args)
    except LoginAborted as aborted:
        return _abort(rt, session, connector, ticket, aborted)
    return _finish(rt, session, connector, ticket, result)


def _complete_upstream(
    rt: Runtime, connector: ConnectorSettings, ticket: dict[str, Any], args: MultiDict[str, str]
) -> UpstreamResult:
    """Steps 1-5 and the relayed visas of step 7 (module docstring)."""
    try:
        metadata = current_upstreams().metadata(connector)
    except DiscoveryError as exc:
        raise LoginAborted(UNAVAILABLE, f"discovery_{exc.reason}", exc.detail) from None
    if metadata.issuer != ticket["issuer"]:
        raise LoginAborted(UNAVAILABLE, "issuer_changed", "the connector's issuer changed during the login")
    issuers = args.getlist("iss")
    if len(issuers) > 1:
        raise LoginAborted(ACCESS_DENIED, "iss_repeated", "the response repeats iss")
    if issuers and issuers[0] != metadata.issuer:
        raise LoginAborted(ACCESS_DENIED, "iss_mismatch", "the response comes from another issuer (mix-up)")
    if not issuers and metadata.iss_parameter_supported:
        raise LoginAborted(ACCESS_DENIED, "iss_missing", "the upstream advertises iss but the response lacks it")
    if "error" in args:
        raise LoginAborted(ACCESS_DENIED, "upstream_error", "the upstream answered with an error")
    codes = args.getlist("code")
    if len(codes) != 1 or not _CODE.fullmatch(codes[0]):
        raise LoginAborted(ACCESS_DENIED, "bad_code", "the response has no single, well-formed code")
    tokens = _redeem(rt, connector, metadata, ticket, codes[0])
    now = int(time.time())
    try:
        id_claims = verify_id_token(
            tokens["id_token"],
            issuer=metadata.issuer,
            client_id=str(connector.client_id),
            nonce=ticket["nonce"],
            keys=current_upstreams().keys(metadata),
            now=now,
            leeway=rt.settings.limits.clock_leeway_seconds,
            max_bytes=connector.max_response_bytes,
            max_depth=rt.settings.limits.max_json_depth,
        )
    except IdTokenError as exc:
        raise LoginAborted(ACCESS_DENIED, f"id_token_{exc.reason}", exc.detail) from None
    sub = str(id_claims["sub"])
    userinfo = _userinfo(rt, connector, metadata, tokens["access_token"], sub)
    merged = {**id_claims, **(userinfo or {})}
    relayed = _relayed(rt, connector, userinfo)
    return UpstreamResult(sub=sub, claims=merged, asserted=min(int(id_claims["iat"]), now), relayed=relayed)


def _redeem(
    rt: Runtime, connector: ConnectorSettings, metadata: UpstreamMetadata, ticket: dict[str, Any], code: str
) -> dict[str, str]:
    """The code for tokens at the upstream's token endpoint (RFC 6749 4.1.3, RFC 7636 4.5)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": ticket["redirect_uri"],
        "code_verifier": ticket["verifier"],
    }
    headers: dict[str, str] = {}
    client_id = str(connector.client_id)
    if metadata.token_auth_method == "client_secret_basic":
        # RFC 6749 2.3.1: both parts form-encoded before joining and base64-encoding.
        secret = connector.client_secret.get_secret_value() if connector.client_secret else ""
        pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    elif metadata.token_auth_method == "client_secret_post":
        form.update(
            client_id=client_id,
            client_secret=connector.client_secret.get_secret_value() if connector.client_secret else "",
        )
    else:
        form["client_id"] = client_id
    limits = limits_of(connector, rt.settings)
    try:
        response = exchange("POST", metadata.token_endpoint, limits, headers=headers, form=form)
        if 400 <= response.status < 500:
            raise LoginAborted(ACCESS_DENIED, "token_refused", f"the token endpoint answered HTTP {response.status}")
        body = require_json(response, limits.max_json_depth, "the token endpoint")
    except UpstreamHttpError as exc:
        raise LoginAborted(UNAVAILABLE, f"token_{exc.reason}", exc.detail) from None
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise LoginAborted(UNAVAILABLE, "token_type", "the token endpoint did not issue a Bearer token")
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not _BEARER.fullmatch(access_token):
        raise LoginAborted(UNAVAILABLE, "token_access_token", "no well-formed access_token in the token response")
    id_token = body.get("id_token")
    if not isinstance(id_token, str):
        raise LoginAborted(UNAVAILABLE, "token_no_id_token", "no id_token in the token response")
    return {"access_token": access_token, "id_token": id_token}


def _userinfo(
    rt: Runtime, connector: ConnectorSettings, metadata: UpstreamMetadata, access_token: str, sub: str
) -> dict[str, Any] | None:
    """The upstream's userinfo claims (None when it has no userinfo endpoint); same ``sub`` or abort."""
    if metadata.userinfo_endpoint is None:
        return None
    limits = limits_of(connector, rt.settings)
    try:
        response = exchange(
            "GET", metadata.userinfo_endpoint, limits, headers={"Authorization": f"Bearer {access_token}"}
        )
        body = require_json(response, limits.max_json_depth, "the userinfo endpoint")
    except UpstreamHttpError as exc:
        raise LoginAborted(UNAVAILABLE, f"userinfo_{exc.reason}", exc.detail) from None
    if body.get("sub") != sub:
        raise LoginAborted(ACCESS_DENIED, "userinfo_sub_mismatch", "userinfo names another sub than the ID token")
    return body


def _relayed(rt: Runtime, connector: ConnectorSettings, userinfo: dict[str, Any] | None) -> list[str]:
    """The upstream's visas our trust configuration accepts, unchanged (nothing unless relay_passport).

    Judged by the process's one verifier (``Runtime.verifier``: ``trust.visa_issuers``, our own
    keys live from the ring); a refused visa is left out and logged by reason only.
    """
    if not connector.relay_passport or userinfo is None or PASSPORT_CLAIM not in userinfo:
        return []
    tokens = userinfo[PASSPORT_CLAIM]
    verifier = rt.verifier
    if verifier is None:  # a runtime built without create_app: relay nothing rather than guess (fail closed)
        log.error("upstream %s: passport not relayed: no verifier in this process", connector.id)
        return []
    result = verifier.verify_visas(tokens if isinstance(tokens, list) else str(tokens))
    if result.error is not None:
        log.warning("upstream %s: passport not relayed: %s", connector.id, result.error.reason)
        return []
    for rejection in result.rejected:
        log.info("upstream %s: visa not relayed: %s", connector.id, rejection.reason)
    return [visa.raw for visa in result.accepted]


# --------------------------------------------------------------------------- outcome


def _finish(
    rt: Runtime, session: BrowserSession, connector: ConnectorSettings, ticket: dict[str, Any], result: UpstreamResult
) -> Response:
    """Steps 6-8: the account (found, created or linked), the recorded material, the login."""
    now = int(time.time())
    issuer = str(ticket["issuer"])
    source = connector.affiliation_source or issuer
    material = {"affiliations": claims.affiliations(result.claims, source, result.asserted), "relayed": result.relayed}
    ttl = rt.settings.oidc.refresh_token_lifetime_seconds
    link_to = ticket.get("link_to")
    if link_to:
        if session.identity_id != link_to:
            return error_page(
                "Linking stopped",
                "You are no longer logged in as the account that asked to link this identity. Nothing was changed.",
                409,
            )
        try:
            added = accounts.link(rt.store, link_to, issuer, result.sub, connector.id, now)
        except accounts.LinkRefused:
            rt.store.audit_append({"event": "link.refused", "identity_id": link_to, "connector": connector.id}, now)
            return page(
                "login_failed.html",
                status=409,
                title="Identity not linked",
                message=f"This {connector.name or connector.id} identity already belongs to another "
                "account of this service. Nothing was changed.",
                back_url=url_for("login.account"),
                back_text="Back to your account",
            )
        record_material(rt.store, link_to, connector.id, ttl=ttl, **material)
        if added:
            rt.store.audit_append(
                {"event": "link", "identity_id": link_to, "connector": connector.id, "iss": issuer}, now
            )
        return redirect_303(url_for("login.account"))
    profile = accounts.Profile(
        display_name=claims.display_name(result.claims),
        # Only an address the upstream says it verified: remote visa sources
        # may be keyed on it, so an unverified one could fetch another's visas.
        email=(claims.clean_email(result.claims.get("email")) if result.claims.get("email_verified") is True else ""),
    )
    identity_id = accounts.find_or_create(rt.store, issuer, result.sub, connector.id, profile, now)
    record_material(rt.store, identity_id, connector.id, ttl=ttl, **material)
    interaction = ticket.get("interaction") or None
    return complete_login(session, identity_id, connector.id, interaction, session.data.get("next"))


def _abort(
    rt: Runtime, session: BrowserSession, connector: ConnectorSettings, ticket: dict[str, Any], aborted: LoginAborted
) -> Response:
    """End a failed upstream login: to the downstream client with an error, else an error page (EPM h)."""
    now = int(time.time())
    log.warning("upstream login via %s aborted: %s (%s)", connector.id, aborted.reason, aborted.detail)
    rt.store.audit_append({"event": "login.failed", "connector": connector.id, "reason": aborted.reason}, now)
    interaction = ticket.get("interaction")
    if interaction and not ticket.get("link_to"):
        data = rt.store.consume_ticket(INTERACTION, interaction)
        if data is not None and data.get("browser") == session.browser:
            return error_redirect(data["redirect_uri"], aborted.error, DESCRIPTIONS[aborted.error], data.get("state"))
    if ticket.get("link_to"):
        back_url, back_text = url_for("login.account"), "Back to your account"
    else:
        back_url, back_text = url_for("login.login_page"), "Back to the login page"
    status = 503 if aborted.error == UNAVAILABLE else 400
    return page(
        "login_failed.html",
        status=status,
        title="Login failed",
        message=f"{DESCRIPTIONS[aborted.error]} No one was logged in.",
        back_url=back_url,
        back_text=back_text,
    )
