"""The ``oidc`` connector: log a researcher in at an upstream OpenID Provider, or link one more identity.

``POST /login/upstream/<connector>`` (a form on the login page, or on the account page with
``link=yes``) starts an authorization code flow at the upstream; the upstream sends the
browser back to ``GET /login/callback/<connector>``, one redirect URI per connector (RFC 9700
4.4.2.2, so a response can only come back to the connector that asked for it).

Binding and single use (THREAT-MODEL RP-01, RP-02): ``state``, ``nonce`` and the PKCE S256
verifier are fresh random values kept in one ``upstream-login`` record (keyed by a hash of
``state``) that also names the browser (the session's ``browser`` value), the connector, the
upstream issuer and the pending downstream request. The callback takes that record (single
use) before anything else: an unknown or used ``state``, another browser's record or another
connector's record ends the request with a 400 page and nothing is sent to any upstream.

Then, in order (any failure aborts the login, EPM h; see :meth:`UpstreamLogins._abort`):

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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from werkzeug.datastructures import MultiDict

from broker.core.models import PASSPORT_CLAIM
from broker.errors import BrokerError
from broker.identity.service import LinkRefused, Profile
from broker.login import claims
from broker.login.discovery import DiscoveryError, UpstreamMetadata
from broker.login.id_token import IdTokenError, verify_id_token
from broker.login.records import UpstreamLogin
from broker.login.service import EXPIRED, UNKNOWN_CONNECTOR, Failed, Go, LoginArea, Refused
from broker.login.settings import ConnectorSettings
from broker.login.upstream_http import UpstreamHttpError, exchange, require_json
from broker.oidc.passwords import token_hash
from broker.oidc.pkce import s256
from broker.web.session import BrowserSession

log = logging.getLogger("broker.login")

_STATE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_CODE = re.compile(r"[\x21-\x7e]{1,2048}")
_BEARER = re.compile(r"[A-Za-z0-9\-._~+/]{1,8192}=*")
ACCESS_DENIED = "access_denied"
UNAVAILABLE = "temporarily_unavailable"
DESCRIPTIONS = {
    ACCESS_DENIED: "Login at the home organisation failed.",
    UNAVAILABLE: "The home organisation's login service is not available.",
}
MAX_INTERACTION_CHARS = 64
Outcome = Go | Refused | Failed


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


def callback_url(issuer: str, connector_id: str) -> str:
    """Our redirect URI at the upstream for this connector (register it there)."""
    return f"{issuer.rstrip('/')}/login/callback/{connector_id}"


class UpstreamLogins:
    """The ``oidc`` connector's two steps over one :class:`LoginArea` (see the module docstring)."""

    def __init__(self, login: LoginArea) -> None:
        self.login = login

    # ------------------------------------------------------------------ start

    def start(self, connector_id: str, session: BrowserSession | None, form: MultiDict[str, str], now: int) -> Outcome:
        """``POST /login/upstream/<connector>``: send the browser to the upstream's authorization endpoint."""
        login = self.login
        connector = login.connector(connector_id, "oidc")
        if connector is None:
            return UNKNOWN_CONNECTOR
        linking = form.get("link") == "yes"
        interaction = "" if linking else form.get("interaction", "")
        purpose = f"link:{connector_id}" if linking else f"login:{connector_id}:{interaction}"
        if session is None or not session.csrf_ok(purpose, form.get("csrf_token")):
            return Refused("Request refused", "The form was not sent from this page (CSRF check failed).", 403)
        if linking and session.identity_id is None:
            return Refused("Not logged in", "Log in first, then link another identity from your account page.", 401)
        if interaction and (
            len(interaction) > MAX_INTERACTION_CHARS or login.pending.client_name(interaction, session.browser) is None
        ):
            return EXPIRED
        try:
            metadata = login.upstreams.metadata(connector)
        except DiscoveryError as exc:
            log.warning("upstream %s unusable: %s", connector_id, exc)
            login.audit({"event": "login.unavailable", "connector": connector_id, "reason": exc.reason}, now)
            back = "/login?" + urlencode({"interaction": interaction}) if interaction else "/login"
            return Failed(
                "Login not available",
                f"Logging in with {connector.name or connector.id} is not available right now.",
                503,
                "/account" if linking else back,
                "Back to your account" if linking else "Choose another way to log in",
            )
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)
        redirect_uri = callback_url(login.issuer, connector_id)
        login.logins.put(
            UpstreamLogin(
                state_hash=token_hash(state),
                connector=connector_id,
                browser=session.browser,
                issuer=metadata.issuer,
                nonce=nonce,
                verifier=verifier,
                redirect_uri=redirect_uri,
                created_at=now,
                expires_at=now + login.settings.interaction_lifetime_seconds,
                interaction=interaction,
                link_to=session.identity_id if linking else None,
            )
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
        endpoint = metadata.authorization_endpoint
        return Go(endpoint + ("&" if "?" in endpoint else "?") + urlencode(params))

    # ------------------------------------------------------------------ callback

    def callback(
        self, connector_id: str, session: BrowserSession | None, args: MultiDict[str, str], now: int
    ) -> Outcome:
        """``GET /login/callback/<connector>``: the upstream's authorization response."""
        login = self.login
        connector = login.connector(connector_id, "oidc")
        if connector is None:
            return UNKNOWN_CONNECTOR
        states = args.getlist("state")
        ticket = None
        if session is not None and len(states) == 1 and _STATE.fullmatch(states[0]):
            ticket = login.logins.take(token_hash(states[0]))
        if session is None or ticket is None or ticket.browser != session.browser or ticket.connector != connector_id:
            login.audit({"event": "login.failed", "connector": connector_id, "reason": "unknown_state"}, now)
            return Refused(
                "Login response not expected",
                "This login response does not belong to a login started in this browser, or it was already used.",
            )
        try:
            result = self._complete_upstream(connector, ticket, args, now)
        except LoginAborted as aborted:
            return self._abort(session, connector, ticket, aborted, now)
        return self._finish(session, connector, ticket, result, now)

    def _complete_upstream(
        self, connector: ConnectorSettings, ticket: UpstreamLogin, args: MultiDict[str, str], now: int
    ) -> UpstreamResult:
        """Steps 1-5 and the relayed visas of step 7 (module docstring)."""
        login = self.login
        try:
            metadata = login.upstreams.metadata(connector)
        except DiscoveryError as exc:
            raise LoginAborted(UNAVAILABLE, f"discovery_{exc.reason}", exc.detail) from None
        if metadata.issuer != ticket.issuer:
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
        tokens = self._redeem(connector, metadata, ticket, codes[0])
        try:
            id_claims = verify_id_token(
                tokens["id_token"],
                issuer=metadata.issuer,
                client_id=str(connector.client_id),
                nonce=ticket.nonce,
                keys=login.upstreams.keys(metadata),
                now=now,
                leeway=login.leeway,
                max_bytes=connector.max_response_bytes,
                max_depth=login.max_json_depth,
            )
        except IdTokenError as exc:
            raise LoginAborted(ACCESS_DENIED, f"id_token_{exc.reason}", exc.detail) from None
        sub = str(id_claims["sub"])
        userinfo = self._userinfo(connector, metadata, tokens["access_token"], sub)
        merged = {**id_claims, **(userinfo or {})}
        relayed = self._relayed(connector, userinfo)
        return UpstreamResult(sub=sub, claims=merged, asserted=min(int(id_claims["iat"]), now), relayed=relayed)

    def _redeem(
        self, connector: ConnectorSettings, metadata: UpstreamMetadata, ticket: UpstreamLogin, code: str
    ) -> dict[str, str]:
        """The code for tokens at the upstream's token endpoint (RFC 6749 4.1.3, RFC 7636 4.5)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": ticket.redirect_uri,
            "code_verifier": ticket.verifier,
        }
        headers: dict[str, str] = {}
        client_id = str(connector.client_id)
        secret = connector.client_secret.get_secret_value() if connector.client_secret else ""
        if metadata.token_auth_method == "client_secret_basic":
            # RFC 6749 2.3.1: both parts form-encoded before joining and base64-encoding.
            pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        elif metadata.token_auth_method == "client_secret_post":
            form.update(client_id=client_id, client_secret=secret)
        else:
            form["client_id"] = client_id
        limits = self.login.upstreams.limits(connector)
        try:
            response = exchange("POST", metadata.token_endpoint, limits, headers=headers, form=form)
            if 400 <= response.status < 500:
                raise LoginAborted(
                    ACCESS_DENIED, "token_refused", f"the token endpoint answered HTTP {response.status}"
                )
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
        self, connector: ConnectorSettings, metadata: UpstreamMetadata, access_token: str, sub: str
    ) -> dict[str, Any] | None:
        """The upstream's userinfo claims (None when it has no userinfo endpoint); same ``sub`` or abort."""
        if metadata.userinfo_endpoint is None:
            return None
        limits = self.login.upstreams.limits(connector)
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

    def _relayed(self, connector: ConnectorSettings, userinfo: dict[str, Any] | None) -> list[str]:
        """The upstream's visas our trust configuration accepts, unchanged (nothing unless relay_passport).

        Judged by the process's one verifier (``trust.visa_issuers``, our own keys live from
        the ring); a refused visa is left out and logged by reason only.
        """
        if not connector.relay_passport or userinfo is None or PASSPORT_CLAIM not in userinfo:
            return []
        tokens = userinfo[PASSPORT_CLAIM]
        verifier = self.login.verifier
        if verifier is None:  # built without a verifier: relay nothing rather than guess (fail closed)
            log.error("upstream %s: passport not relayed: no verifier in this process", connector.id)
            return []
        result = verifier.verify_visas(tokens if isinstance(tokens, list) else str(tokens))
        if result.error is not None:
            log.warning("upstream %s: passport not relayed: %s", connector.id, result.error.reason)
            return []
        for rejection in result.rejected:
            log.info("upstream %s: visa not relayed: %s", connector.id, rejection.reason)
        return [visa.raw for visa in result.accepted]

    # ------------------------------------------------------------------ outcome

    def _finish(
        self,
        session: BrowserSession,
        connector: ConnectorSettings,
        ticket: UpstreamLogin,
        result: UpstreamResult,
        now: int,
    ) -> Outcome:
        """Steps 6-8: the account (found, created or linked), the recorded material, the login."""
        login = self.login
        issuer = ticket.issuer
        source = connector.affiliation_source or issuer
        affiliations = claims.affiliations(result.claims, source, result.asserted)
        link_to = ticket.link_to
        if link_to:
            if session.identity_id != link_to:
                return Refused(
                    "Linking stopped",
                    "You are no longer logged in as the account that asked to link this identity. Nothing was changed.",
                    409,
                )
            try:
                added = login.identities.link(link_to, issuer, result.sub, connector.id, now)
            except LinkRefused:
                login.audit({"event": "link.refused", "identity_id": link_to, "connector": connector.id}, now)
                return Failed(
                    "Identity not linked",
                    f"This {connector.name or connector.id} identity already belongs to another "
                    "account of this service. Nothing was changed.",
                    409,
                    "/account",
                    "Back to your account",
                )
            login.upstream_visas.record(link_to, connector.id, affiliations=affiliations, relayed=result.relayed)
            if added:
                login.audit({"event": "link", "identity_id": link_to, "connector": connector.id, "iss": issuer}, now)
            return Go("/account")
        profile = Profile(
            display_name=claims.display_name(result.claims),
            # Only an address the upstream says it verified: remote visa sources
            # may be keyed on it, so an unverified one could fetch another's visas.
            email=(
                claims.clean_email(result.claims.get("email")) if result.claims.get("email_verified") is True else ""
            ),
        )
        identity = login.identities.find_or_create(issuer, result.sub, connector.id, profile, now)
        login.upstream_visas.record(identity.id, connector.id, affiliations=affiliations, relayed=result.relayed)
        return login.complete_login(session, identity.id, connector.id, ticket.interaction or None, now)

    def _abort(
        self,
        session: BrowserSession,
        connector: ConnectorSettings,
        ticket: UpstreamLogin,
        aborted: LoginAborted,
        now: int,
    ) -> Outcome:
        """End a failed upstream login: to the downstream client with an error, else an error page (EPM h)."""
        login = self.login
        log.warning("upstream login via %s aborted: %s (%s)", connector.id, aborted.reason, aborted.detail)
        login.audit({"event": "login.failed", "connector": connector.id, "reason": aborted.reason}, now)
        if ticket.interaction and not ticket.link_to:
            location = login.pending.abort(
                ticket.interaction, session.browser, aborted.error, DESCRIPTIONS[aborted.error]
            )
            if location is not None:
                return Go(location)
        if ticket.link_to:
            back_url, back_text = "/account", "Back to your account"
        else:
            back_url, back_text = "/login", "Back to the login page"
        status = 503 if aborted.error == UNAVAILABLE else 400
        return Failed(
            "Login failed", f"{DESCRIPTIONS[aborted.error]} No one was logged in.", status, back_url, back_text
        )
