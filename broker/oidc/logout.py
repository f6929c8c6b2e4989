"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

``post_logout_redirect_uri`` is followed only when it is exactly one of the client's
registered post-logout URIs and the client is known (from ``client_id`` or the
``id_token_hint`` audience); otherwise the answer is a page, never a redirect (THREAT-MODEL
OA-30, EPM i). Without a valid hint naming the logged-in user, the user confirms with a
CSRF-protected form, so a cross-site link cannot log anyone out. Ours rather than authlib's
``rpinitiated`` endpoint: the hint goes through our one JWS path, and the confirmation is
bound to our session's CSRF key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.datastructures import MultiDict

from broker.oidc.authorization import Refusal, add_query
from broker.oidc.clients import logout_uri_registered
from broker.oidc.params import OversizedParameter, RepeatedParameter, single_values
from broker.oidc.tokens import InvalidToken
from broker.web.session import BrowserSession

if TYPE_CHECKING:
    from broker.oidc.provider import OpenIDProvider


@dataclass(frozen=True)
class ConfirmLogout:
    """Ask the person to confirm (a form with a CSRF token); ``params`` are carried on."""

    csrf_token: str
    params: dict[str, str]


@dataclass(frozen=True)
class LoggedOut:
    """End the session; then redirect to ``location`` (a registered URI) or show the logged-out page."""

    location: str | None


def logout(
    op: OpenIDProvider, source: MultiDict[str, str], session: BrowserSession | None, *, posted: bool
) -> Refusal | ConfirmLogout | LoggedOut:
    """``GET``/``POST /logout`` (see the module docstring)."""
    try:
        params = single_values(source)
    except (RepeatedParameter, OversizedParameter) as exc:
        return Refusal("Invalid logout request", str(exc))
    hint: dict[str, Any] | None = None
    if "id_token_hint" in params:
        try:
            hint = op.tokens.id_token_hint(params["id_token_hint"])
        except InvalidToken:
            return Refusal("Invalid logout request", "id_token_hint is not an ID token we issued.")
    client_id = params.get("client_id")
    if hint is not None:
        if client_id is not None and client_id != hint["aud"]:
            return Refusal("Invalid logout request", "client_id does not match the id_token_hint.")
        client_id = hint["aud"]
    target = params.get("post_logout_redirect_uri")
    if target is not None:
        client = op.clients.get(client_id)
        if client is None or not logout_uri_registered(client, target):
            return Refusal("Invalid logout request", "The address to return to is not registered.")
    confirmed = posted and session is not None and session.csrf_ok("logout", source.get("csrf_token"))
    hint_matches = session is not None and hint is not None and hint.get("sub") == session.identity_id
    if session is not None and session.identity_id is not None and not (confirmed or hint_matches):
        return ConfirmLogout(csrf_token=session.csrf_token("logout"), params=params)
    if target is None:
        return LoggedOut(None)
    return LoggedOut(add_query(target, {"state": params["state"]}) if "state" in params else target)
