"""The authorization endpoint (OIDC Core 3.1.2, RFC 6749 4.1), the pending request and the consent step.

Order of checks (RFC 6749 4.1.2.1, THREAT-MODEL OA-01..OA-03): the client and the redirect URI
are validated first, by exact string comparison; if either is wrong the answer is an HTML
error page (400) and nothing is sent anywhere. Only then may an error be redirected, always
with ``error``, ``state`` (when sent) and ``iss`` (RFC 9207, ours: authlib's ``IssuerParameter``
only reaches the code response, not the error redirects made here or after login). Then, in
this order: repeated or oversized parameters, request objects (unsupported), ``response_type``
(only ``code``), ``response_mode``; then authlib validates the request on our
:class:`~broker.oidc.grants.CodeGrant` (client may use the code grant, scopes allowed for the
client); then ours: ``openid`` required, PKCE (S256; required of every client unless the
operator relaxed it for a confidential one, OA-05), ``nonce`` length, ``prompt``, ``max_age``
and ``id_token_hint`` (an ID token of ours for this client).

A valid request becomes an :class:`~broker.oidc.records.Interaction` bound to the browser
(the session's ``browser`` value); login and consent refer to it, and the code is issued when
it is taken (single use), so each interaction yields at most one code. The code itself is
made by authlib's ``create_authorization_response`` on the stored request, so the client,
redirect URI, scopes and PKCE challenge are checked again at the moment the code is made.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from authlib.oauth2.base import OAuth2Error  # type: ignore[import-untyped]
from werkzeug.datastructures import MultiDict

from broker.oidc.clients import pkce_required, redirect_uri_registered
from broker.oidc.consent import now_ms
from broker.oidc.errors import OAuthError, from_authlib
from broker.oidc.grants import Approval
from broker.oidc.params import OversizedParameter, RepeatedParameter, scope_list, single_values
from broker.oidc.pkce import S256CodeChallenge
from broker.oidc.records import Client, Interaction
from broker.oidc.server import OAuthRequest
from broker.oidc.tokens import InvalidToken
from broker.oidc.visas import VisaSummary, summarize
from broker.web.session import BrowserSession

if TYPE_CHECKING:
    from broker.oidc.provider import OpenIDProvider

PROMPTS = frozenset({"none", "login", "consent", "select_account"})
MAX_NONCE_CHARS = 512
MAX_INTERACTION_ID_CHARS = 64
SCOPE_TEXT = {
    "openid": "your broker account identifier",
    "profile": "your name",
    "email": "your e-mail address",
    "ga4gh_passport_v1": "your GA4GH visas (listed below)",
    "dac": "acting for you in the DAC tool (grants and members of your committees)",
    "ga4gh_permissions": "reading people's visas through the permissions API",
}


@dataclass(frozen=True)
class Redirect:
    """Send the browser to ``location`` (a 303; the code and errors go to the client this way)."""

    location: str


@dataclass(frozen=True)
class Refusal:
    """An HTML error page, never a redirect."""

    title: str
    message: str
    status: int = 400


@dataclass(frozen=True)
class ConsentPrompt:
    """The consent page for a pending request."""

    interaction: str
    client_name: str
    user_name: str
    scopes: list[dict[str, str]]
    visas: list[VisaSummary] | None
    csrf_token: str


Outcome = Redirect | Refusal | ConsentPrompt


def add_query(uri: str, params: dict[str, str]) -> str:
    """``uri`` with ``params`` appended to its query (registered URIs have no fragment; their query is kept as is)."""
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


def scope_lines(scopes: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    return [{"name": s, "text": SCOPE_TEXT.get(s, s)} for s in scopes]


class Authorizations:
    """``/authorize``, ``/authorize/continue`` and ``/consent`` (see the module docstring)."""

    def __init__(self, op: OpenIDProvider) -> None:
        self.op = op
        self.pkce = S256CodeChallenge()

    # ------------------------------------------------------------------ redirects to the client

    def error_redirect(self, redirect_uri: str, error: str, description: str, state: str | None) -> Redirect:
        """An error for the client: error, error_description, state (if any) and iss (RFC 9207)."""
        params = {"error": error, "error_description": description}
        if state is not None:
            params["state"] = state
        params["iss"] = self.op.issuer
        return Redirect(add_query(redirect_uri, params))

    @staticmethod
    def login_location(uid: str) -> str:
        return "/login?" + urlencode({"interaction": uid})

    @staticmethod
    def continue_location(uid: str) -> str:
        return "/authorize/continue?" + urlencode({"interaction": uid})

    # ------------------------------------------------------------------ /authorize

    def start(
        self, source: MultiDict[str, str], session: BrowserSession | None
    ) -> tuple[Outcome, BrowserSession | None]:
        """``GET``/``POST /authorize``; the outcome and the session to save (None: nothing to save).

        Nothing is written for a refused request: only a valid one gets a session and a pending request.
        """
        for name in ("client_id", "redirect_uri"):
            if len([v for v in source.getlist(name) if v]) > 1:
                return Refusal("Invalid request", f"The {name} parameter is repeated."), None
        client = self.op.clients.get(source.get("client_id") or None)
        if client is None:
            return Refusal("Unknown application", "The application that sent you here is not registered."), None
        redirect_uri = source.get("redirect_uri") or None
        if redirect_uri is None or not redirect_uri_registered(client, redirect_uri):
            message = "The application sent a redirect address that is not registered for it."
            return Refusal("Invalid redirect address", message), None
        states = [v for v in source.getlist("state") if v]
        state = states[0] if states else None
        try:
            try:
                params = single_values(source)
            except (RepeatedParameter, OversizedParameter) as exc:
                raise OAuthError("invalid_request", str(exc)) from None
            checked = self._validate(client, params)
        except OAuthError as failure:
            return self.error_redirect(redirect_uri, failure.code, failure.message, state), None
        return self._begin(client, redirect_uri, state, checked, session)

    def _validate(self, client: Client, params: dict[str, str]) -> dict[str, Any]:
        """Every check after client and redirect URI (module docstring); what the interaction keeps."""
        for name, error in (
            ("request", "request_not_supported"),
            ("request_uri", "request_uri_not_supported"),
            ("registration", "registration_not_supported"),
        ):
            if name in params:
                raise OAuthError(error, f"{name} is not supported.")
        response_type = params.get("response_type")
        if response_type is None:
            raise OAuthError("invalid_request", "response_type is required.")
        if response_type != "code":
            raise OAuthError("unsupported_response_type", "Only response_type=code is supported.")
        if params.get("response_mode", "query") != "query":
            raise OAuthError("invalid_request", "Only response_mode=query is supported.")
        try:
            self.op.server.get_consent_grant(self._request(params), end_user=None)
        except OAuth2Error as exc:
            raise from_authlib(exc) from None
        scopes = scope_list(params.get("scope"))
        if "openid" not in scopes:
            raise OAuthError("invalid_scope", "The openid scope is required.")
        self.pkce.check_challenge(params, required=pkce_required(client, self.op.settings.require_pkce))
        nonce = params.get("nonce")
        if nonce is not None and len(nonce) > MAX_NONCE_CHARS:
            raise OAuthError("invalid_request", f"nonce is longer than {MAX_NONCE_CHARS} characters.")
        prompt = scope_list(params.get("prompt"))
        if any(p not in PROMPTS for p in prompt) or ("none" in prompt and len(prompt) > 1):
            raise OAuthError("invalid_request", "Unsupported prompt value.")
        max_age: int | None = None
        if "max_age" in params:
            if not params["max_age"].isdigit() or len(params["max_age"]) > 9:
                raise OAuthError("invalid_request", "max_age must be a non-negative integer.")
            max_age = int(params["max_age"])
        hint_sub: str | None = None
        if "id_token_hint" in params:
            try:
                claims = self.op.tokens.id_token_hint(params["id_token_hint"])
            except InvalidToken:
                raise OAuthError("invalid_request", "id_token_hint is not an ID token of ours.") from None
            if claims["aud"] != client.client_id:
                raise OAuthError("invalid_request", "id_token_hint was issued to another client.")
            hint_sub = claims["sub"]
        return {
            "scope": scopes,
            "nonce": nonce,
            "code_challenge": params.get("code_challenge"),
            "prompt": prompt,
            "max_age": max_age,
            "hint_sub": hint_sub,
        }

    def _request(self, params: dict[str, str]) -> OAuthRequest:
        return OAuthRequest("GET", self.op.endpoint_url("/authorize"), params)

    def _begin(
        self,
        client: Client,
        redirect_uri: str,
        state: str | None,
        checked: dict[str, Any],
        session: BrowserSession | None,
    ) -> tuple[Outcome, BrowserSession | None]:
        now = self.op.now()
        prompt = checked["prompt"]
        logged_in = session is not None and session.identity_id is not None
        needs_login = not logged_in or "login" in prompt
        if session is not None and logged_in and not needs_login:
            if checked["max_age"] is not None and now - session.auth_time > checked["max_age"]:
                needs_login = True
            if checked["hint_sub"] is not None and checked["hint_sub"] != session.identity_id:
                needs_login = True
        if needs_login and "none" in prompt:
            return self.error_redirect(redirect_uri, "login_required", "The user is not logged in.", state), None
        session = session or self.op.sessions.new()
        interaction = Interaction(
            uid=secrets.token_urlsafe(24),
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scope=checked["scope"],
            browser=session.browser,
            created_at=now,
            expires_at=now + self.op.interaction_lifetime_seconds,
            state=state,
            nonce=checked["nonce"],
            code_challenge=checked["code_challenge"],
            prompt=prompt,
            max_age=checked["max_age"],
            hint_sub=checked["hint_sub"],
            force_login=needs_login,
        )
        self.op.repository.interactions.put(interaction)
        if needs_login:
            return Redirect(self.login_location(interaction.uid)), session
        return self._proceed(session, interaction), session

    # ------------------------------------------------------------------ after login

    def pending(self, uid: str, browser: str) -> Interaction | None:
        """The pending request ``uid`` if it belongs to this browser."""
        if not uid or len(uid) > MAX_INTERACTION_ID_CHARS:
            return None
        found = self.op.repository.interactions.get(uid)
        return found if found is not None and found.browser == browser else None

    def resume(self, uid: str, session: BrowserSession | None) -> Outcome:
        """``GET /authorize/continue``: after login, on to consent or the code."""
        found = self.pending(uid, session.browser) if session is not None else None
        if found is None or session is None:
            return Refusal("Request expired", "This login request is unknown or has expired.")
        if session.identity_id is None:
            return Redirect(self.login_location(uid))
        unfit = self._login_unfit(session, found)
        if unfit is not None:
            return unfit
        return self._proceed(session, found)

    def _login_unfit(self, session: BrowserSession, found: Interaction) -> Redirect | None:
        """Why the session's login cannot answer ``found`` (None: it can); checked at every step that can issue a code.

        ``prompt=login`` (and a ``max_age`` or ``id_token_hint`` the login at ``/authorize`` did
        not meet, recorded as ``force_login``) needs a login made after the request began; a
        ``max_age`` is checked again against the time now, unless the login is that fresh; the
        logged-in user must be the ``id_token_hint``'s. Otherwise: back to login, or, for the
        hint, ``login_required`` to the client (the request is ended). Without this at
        ``/consent`` a stale login, or another user's session, got a code (issue 11 item 7).
        """
        fresh = session.auth_time >= found.created_at
        if found.force_login and not fresh:
            return Redirect(self.login_location(found.uid))
        if found.max_age is not None and not fresh and self.op.now() - session.auth_time > found.max_age:
            return Redirect(self.login_location(found.uid))
        if found.hint_sub is not None and found.hint_sub != session.identity_id:
            self.op.repository.interactions.delete(found.uid)
            return self.error_redirect(
                found.redirect_uri, "login_required", "Logged-in user differs from the hint.", found.state
            )
        return None

    def _proceed(self, session: BrowserSession, found: Interaction) -> Outcome:
        identity_id = session.identity_id
        assert identity_id is not None
        consent = self.op.consents.get(identity_id, found.client_id)
        covered = consent is not None and set(found.scope) <= set(consent.scopes)
        if covered and "consent" not in found.prompt:
            if self.op.repository.interactions.take(found.uid) is None:
                return Refusal("Request expired", "This login request was already used.")
            return self._issue_code(session, found)
        if "none" in found.prompt:
            self.op.repository.interactions.delete(found.uid)
            return self.error_redirect(found.redirect_uri, "consent_required", "Consent is required.", found.state)
        return Redirect("/consent?" + urlencode({"interaction": found.uid}))

    def abort(self, uid: str, browser: str, error: str, description: str) -> str | None:
        """End a pending request whose login failed: where to send the browser (the client, with ``error``)."""
        found = self.pending(uid, browser)
        if found is None or self.op.repository.interactions.take(uid) is None:
            return None
        return self.error_redirect(found.redirect_uri, error, description, found.state).location

    # ------------------------------------------------------------------ /consent

    def consent_page(self, uid: str, session: BrowserSession | None) -> Outcome:
        found = self._consentable(uid, session)
        if not isinstance(found, tuple):
            return found
        interaction, client = found
        assert session is not None and session.identity_id is not None
        visas = None
        if "ga4gh_passport_v1" in interaction.scope:
            visas = summarize(self.op.visas_for(session.identity_id))
        return ConsentPrompt(
            interaction=uid,
            client_name=client.name,
            user_name=self.op.display_name(session.identity_id),
            scopes=scope_lines(interaction.scope),
            visas=visas,
            csrf_token=session.csrf_token(f"consent:{uid}"),
        )

    def consent_decision(
        self, uid: str, session: BrowserSession | None, csrf_token: str | None, decision: str | None, remember: bool
    ) -> Outcome:
        """``POST /consent`` (CSRF-checked; the interaction is taken, so it is answered once)."""
        found = self._consentable(uid, session)
        if not isinstance(found, tuple):
            return found
        interaction, client = found
        assert session is not None and session.identity_id is not None
        if not session.csrf_ok(f"consent:{uid}", csrf_token):
            return Refusal("Request refused", "The form was not sent from this page (CSRF check failed).", 403)
        if self.op.repository.interactions.take(uid) is None:
            return Refusal("Request expired", "This consent request was already answered.")
        if decision != "allow":
            return self.error_redirect(
                interaction.redirect_uri, "access_denied", "The user denied the request.", interaction.state
            )
        if remember:
            self.op.consents.remember(session.identity_id, client.client_id, interaction.scope, self.op.now())
        return self._issue_code(session, interaction)

    def _consentable(self, uid: str, session: BrowserSession | None) -> tuple[Interaction, Client] | Refusal | Redirect:
        """The pending request and its client, if this browser's login may answer it (see :meth:`_login_unfit`)."""
        found = self.pending(uid, session.browser) if session is not None else None
        if found is None or session is None or session.identity_id is None:
            return Refusal("Request expired", "This consent request is unknown or has expired.")
        unfit = self._login_unfit(session, found)
        if unfit is not None:
            return unfit
        client = self.op.clients.get(found.client_id)
        if client is None:
            return Refusal("Unknown application", "The application is no longer registered.")
        return found, client

    # ------------------------------------------------------------------ the code

    def _issue_code(self, session: BrowserSession, found: Interaction) -> Outcome:
        """Issue the code of a finished interaction through authlib, and redirect to the client with it."""
        assert session.identity_id is not None
        params = {
            "response_type": "code",
            "client_id": found.client_id,
            "redirect_uri": found.redirect_uri,
            "scope": " ".join(found.scope),
        }
        for name in ("state", "nonce", "code_challenge"):
            value = getattr(found, name)
            if value is not None:
                params[name] = value
        if found.code_challenge is not None:
            params["code_challenge_method"] = "S256"
        request = self._request(params)
        approval = Approval(
            identity_id=session.identity_id, auth_time=session.auth_time, approved_ms=now_ms(), idp=session.connector
        )
        server = self.op.server
        try:
            grant = server.get_authorization_grant(request)
            answer = server.create_authorization_response(request=request, grant_user=approval, grant=grant)
        except OAuth2Error as exc:
            error = from_authlib(exc)
            return self.error_redirect(found.redirect_uri, error.code, error.message, found.state)
        except OAuthError as error:
            return self.error_redirect(found.redirect_uri, error.code, error.message, found.state)
        query = {"code": str(answer.body)}
        if found.state is not None:
            query["state"] = found.state
        query["iss"] = self.op.issuer
        return Redirect(add_query(found.redirect_uri, query))
