"""The device authorization grant (RFC 8628) so command-line tools can log a researcher in.

``/device_authorization`` hands out a device code (secret, kept by the tool, stored by
hash) and a short user code (typed by the person at ``/device`` after logging in). The
person approves or denies on a consent page; the tool polls ``/token`` and gets
``authorization_pending``, ``slow_down``, ``access_denied``, ``expired_token`` or the
tokens, exactly once (the approved record is consumed atomically).

Polling too fast gets ``slow_down`` and raises the interval by 5 s for every later poll
(RFC 8628 3.5). User codes have 20^8 values; RFC 8628 5.1 still asks for rate limits:
unknown codes typed at ``/device`` count per account and per address, and device
authorizations (each a live user code) per client and address; past a limit the answer
is ``429`` with ``Retry-After`` (``rate_limit.py``).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from flask import Response, jsonify, request, url_for

from broker.login.session import BrowserSession
from broker.oidc import grants
from broker.oidc.authorize import SCOPE_TEXT, redirect_303
from broker.oidc.client_auth import AuthenticatedClient
from broker.oidc.clients import DEVICE_CODE_GRANT, find_client
from broker.oidc.consent_withdrawal import now_ms
from broker.oidc.errors import OAuthError, no_store
from broker.oidc.params import scope_list
from broker.oidc.passwords import token_hash
from broker.oidc.rate_limit import (
    DEVICE_AUTHORIZATIONS,
    USER_CODE_FAILURES,
    USER_CODE_FAILURES_PER_ADDRESS,
    Limit,
    RateLimited,
    RateLimiter,
    client_address,
    limit_key,
)
from broker.oidc.visas import summarize
from broker.runtime import Runtime, current_runtime
from broker.store.base import Client
from broker.web.pages import error_page, page

DEVICE = "device"
DEVICE_POLL = "device_poll"
USER_CODE = "device_user_code"
SLOW_DOWN_STEP = 5  # seconds added to the interval by each slow_down (RFC 8628 3.5)
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels (no words), no look-alikes (RFC 8628 6.1)


def _normalize(user_code: str) -> str:
    return "".join(c for c in user_code.upper() if c in USER_CODE_ALPHABET)[:16]


def start_device_authorization(rt: Runtime, client: Client, scopes: tuple[str, ...], now: int) -> dict[str, Any]:
    """Create a pending device authorization; the RFC 8628 3.2 response body."""
    lifetime = rt.settings.oidc.device_code_lifetime_seconds
    device_code = secrets.token_urlsafe(32)
    user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    record = {
        "client_id": client.client_id,
        "scope": list(scopes),
        "status": "pending",
        "user_code": user_code,
        "expires_at": now + lifetime,
    }
    if not rt.store.add_ticket(USER_CODE, user_code, {"device": token_hash(device_code)}, lifetime):
        raise OAuthError("temporarily_unavailable", "Try again.", 503)
    rt.store.put_ticket(DEVICE, token_hash(device_code), record, lifetime)
    base = rt.settings.issuer.rstrip("/")
    return {
        "device_code": device_code,
        "user_code": f"{user_code[:4]}-{user_code[4:]}",
        "verification_uri": f"{base}/device",
        "verification_uri_complete": f"{base}/device?user_code={user_code[:4]}-{user_code[4:]}",
        "expires_in": lifetime,
        "interval": rt.settings.oidc.device_poll_interval_seconds,
    }


def device_authorization() -> Response:
    """POST /device_authorization (RFC 8628 3.1-3.2)."""
    from broker.oidc.endpoints import client_of_request, form_params

    rt = current_runtime()
    form = form_params()
    auth = client_of_request(rt, form, "/device_authorization", allow_public=True)
    if DEVICE_CODE_GRANT not in auth.client.grant_types:
        raise OAuthError("unauthorized_client", "This client may not use the device authorization grant.")
    scopes = scope_list(form.get("scope")) or ("openid",)
    if "openid" not in scopes or any(s not in auth.client.scopes for s in scopes):
        raise OAuthError("invalid_scope", "Scope not allowed for this client (openid is required).")
    now = int(time.time())
    try:
        RateLimiter(rt.store).take(DEVICE_AUTHORIZATIONS, limit_key(auth.client.client_id, client_address()), now)
    except RateLimited as exc:
        raise exc.oauth_error() from None
    return no_store(jsonify(start_device_authorization(rt, auth.client, scopes, now)))


def _check_poll(rt: Runtime, key: str, expires_at: int, now: int) -> None:
    """Enforce the polling interval (RFC 8628 3.5): ``slow_down`` adds 5 s to it, for good.

    The poll state has its own ticket so a poll never overwrites the approval the person
    writes into the device record at the same moment.
    """
    state = rt.store.peek_ticket(DEVICE_POLL, key) or {}
    interval = int(state.get("interval", rt.settings.oidc.device_poll_interval_seconds))
    last = state.get("last_poll")
    too_fast = last is not None and now - int(last) < interval
    if too_fast:
        interval += SLOW_DOWN_STEP
    rt.store.put_ticket(DEVICE_POLL, key, {"last_poll": now, "interval": interval}, max(1, expires_at - now))
    if too_fast:
        raise OAuthError("slow_down", f"Poll less often: wait at least {interval} seconds between requests.")


def redeem(rt: Runtime, auth: AuthenticatedClient, form: dict[str, str], now: int) -> dict[str, Any]:
    """The device_code grant at /token (RFC 8628 3.4-3.5)."""
    device_code = form.get("device_code")
    if not device_code:
        raise OAuthError("invalid_request", "device_code is required.")
    key = token_hash(device_code)
    record = rt.store.peek_ticket(DEVICE, key)
    if record is None or record["expires_at"] <= now:
        raise OAuthError("expired_token", "The device code is unknown or expired.")
    if record["client_id"] != auth.client.client_id:
        raise OAuthError("invalid_grant", "The device code was issued to another client.")
    if record["status"] == "pending":
        _check_poll(rt, key, int(record["expires_at"]), now)
        raise OAuthError("authorization_pending", "The user has not answered yet.")
    record = rt.store.consume_ticket(DEVICE, key)
    if record is None:
        raise OAuthError("expired_token", "The device code was already used.")
    if record["status"] != "approved":
        raise OAuthError("access_denied", "The user denied the request.")
    grant = grants.new_grant(
        rt, auth.client.client_id, record["identity_id"], tuple(record["scope"]), int(record.get("approved_ms", 0)), now
    )
    return grants.issue_tokens(rt, auth, grant, now, auth_time=record["auth_time"], idp=record.get("idp"))


def device_verify() -> Response:
    """GET/POST /device: enter the user code, then approve or deny (login required, CSRF-checked)."""
    rt = current_runtime()
    session = BrowserSession.load(rt.settings, rt.store, request)
    if session is None or session.identity_id is None:
        code = request.args.get("user_code", "")
        next_path = "/device" + (f"?user_code={_normalize(code)}" if code else "")
        return redirect_303(url_for("login.login_page", next=next_path))
    if request.method == "GET":
        return page(
            "device.html", csrf_token=session.csrf_token("device"), user_code=request.args.get("user_code", "")[:20]
        )
    decision = request.form.get("decision")
    user_code = _normalize(request.form.get("user_code", ""))
    if decision is None:
        if not session.csrf_ok("device", request.form.get("csrf_token")):
            return error_page("Request refused", "The form was not sent from this page (CSRF check failed).", 403)
        limited = _guessing_limited(rt, session.identity_id)
        if limited is not None:
            return limited
        pointer = rt.store.peek_ticket(USER_CODE, user_code) if len(user_code) == 8 else None
        record = rt.store.peek_ticket(DEVICE, pointer["device"]) if pointer else None
        if record is None or record["status"] != "pending":
            return _unknown_code(rt, session)
        client = find_client(rt.settings, rt.store, record["client_id"])
        visas = None
        if "ga4gh_passport_v1" in record["scope"]:
            visas = summarize(rt.passport_visas(session.identity_id))
        identity = rt.store.get_identity(session.identity_id)
        return page(
            "device_consent.html",
            client_name=client.name if client else record["client_id"],
            user_code=user_code,
            csrf_token=session.csrf_token(f"device:{user_code}"),
            scopes=[{"name": s, "text": SCOPE_TEXT.get(s, s)} for s in record["scope"]],
            visas=visas,
            user_name=identity.display_name if identity else session.identity_id,
        )
    if not session.csrf_ok(f"device:{user_code}", request.form.get("csrf_token")):
        return error_page("Request refused", "The form was not sent from this page (CSRF check failed).", 403)
    limited = _guessing_limited(rt, session.identity_id)
    if limited is not None:
        return limited
    pointer = rt.store.consume_ticket(USER_CODE, user_code)
    record = rt.store.peek_ticket(DEVICE, pointer["device"]) if pointer else None
    if pointer is None or record is None or record["status"] != "pending":
        return _unknown_code(rt, session)
    now = int(time.time())
    approved = decision == "allow"
    record.update(
        status="approved" if approved else "denied",
        identity_id=session.identity_id,
        auth_time=int(session.data.get("auth_time", now)),
        idp=session.data.get("connector"),
        approved_ms=now_ms(),
    )
    rt.store.put_ticket(DEVICE, pointer["device"], record, max(1, record["expires_at"] - now))
    message = "The device is connected; you can return to it." if approved else "The request was denied."
    return page("device.html", done=message, csrf_token="", user_code="")


def _guessing_keys(identity_id: str) -> tuple[tuple[Limit, str], ...]:
    return ((USER_CODE_FAILURES, limit_key(identity_id)), (USER_CODE_FAILURES_PER_ADDRESS, client_address()))


def _guessing_limited(rt: Runtime, identity_id: str) -> Response | None:
    """The 429 page if this account or address typed too many unknown user codes (RFC 8628 5.1)."""
    try:
        RateLimiter(rt.store).check_all(_guessing_keys(identity_id))
    except RateLimited as exc:
        return exc.page()
    return None


def _unknown_code(rt: Runtime, session: BrowserSession) -> Response:
    """Count a wrong user code against the account and the address, and say so."""
    assert session.identity_id is not None
    RateLimiter(rt.store).hit_all(_guessing_keys(session.identity_id))
    return page(
        "device.html",
        status=400,
        csrf_token=session.csrf_token("device"),
        user_code="",
        error="That code is unknown or expired.",
    )
