"""The login area as one typed service: connectors, local accounts, upstream logins, the account page.

:class:`LoginArea` takes only what it needs: its settings section, our issuer, the kernel,
the browser sessions, the identity service, and three narrow views of the OpenID Provider
(defined here as protocols, so login never imports the OP): the pending authorization
requests a login continues (:class:`PendingAuthorizations`), the consent book the account
page lists (:class:`ConsentBook`), and the visa verifier that judges relayed upstream visas.

Every login rotates the session id (session fixation); every redirect after a POST is 303
(RFC 9700 4.12); password guessing is limited per (connector, user name, address) and per
address, ``429`` with ``Retry-After`` past the limit (OA-18).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from broker.identity.service import IdentityService
from broker.login.local import LocalAccounts
from broker.login.material import UpstreamVisas
from broker.login.records import UPSTREAM_LOGINS
from broker.login.settings import ConnectorSettings, LoginSettings
from broker.login.upstreams import Upstreams
from broker.store.kernel import Kernel
from broker.store.records import Records
from broker.web.rate_limit import Limit, RateLimited, RateLimiter, limit_key
from broker.web.session import BrowserSession, Sessions

# Failed password logins per (connector, user name, address) and per address (OA-18).
LOGIN_FAILURES = Limit("login_failure", count=10, window=300)
LOGIN_FAILURES_PER_ADDRESS = Limit("login_failure_address", count=100, window=300)
_SAFE_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.?=&-]*")


class PendingAuthorizations(Protocol):
    """The OP's pending authorization requests, as a login sees them."""

    def client_name(self, interaction: str, browser: str) -> str | None: ...

    def continue_location(self, interaction: str) -> str: ...

    def abort(self, interaction: str, browser: str, error: str, description: str) -> str | None: ...


class ConsentLike(Protocol):
    client_id: str
    scopes: tuple[str, ...]


class ConsentBook(Protocol):
    """The OP's remembered consents, as the account page lists and withdraws them."""

    def of(self, identity_id: str) -> list[Any]: ...

    def withdraw(self, identity_id: str, client_id: str, at_ms: int | None = None) -> bool: ...


class VisaVerifier(Protocol):
    """What relaying needs of :class:`broker.core.verify.Verifier`."""

    def verify_visas(self, visas: Any) -> Any: ...


def safe_next(value: str | None) -> str | None:
    """A same-origin relative path, else None (THREAT-MODEL OA-31).

    Only ``/`` followed by a character other than ``/`` or ``\\``, and only letters, digits and
    ``/ _ - . ? = &``: no scheme, no authority, no percent-escapes, no control characters.
    """
    if not value or len(value) > 500 or not _SAFE_PATH.fullmatch(value):
        return None
    return value


@dataclass(frozen=True)
class Go:
    """Send the browser to ``location`` (303)."""

    location: str


@dataclass(frozen=True)
class Refused:
    """The plain error page."""

    title: str
    message: str
    status: int = 400


@dataclass(frozen=True)
class Failed:
    """The "login failed" page, with a way back."""

    title: str
    message: str
    status: int
    back_url: str
    back_text: str


CSRF_REFUSED = Refused("Request refused", "The form was not sent from this page (CSRF check failed).", 403)
UNKNOWN_CONNECTOR = Refused("Unknown login method", "This login method does not exist.", 404)
EXPIRED = Refused("Request expired", "This login request is unknown or has expired.")


class LoginArea:
    """Logging in and the account page (see the module docstring)."""

    def __init__(
        self,
        settings: LoginSettings,
        *,
        issuer: str,
        kernel: Kernel,
        sessions: Sessions,
        identities: IdentityService,
        pending: PendingAuthorizations,
        consents: ConsentBook,
        upstream_visas: UpstreamVisas,
        upstreams: Upstreams,
        verifier: VisaVerifier | None,
        leeway: int,
        max_json_depth: int,
    ) -> None:
        self.settings = settings
        self.issuer = issuer
        self.kernel = kernel
        self.sessions = sessions
        self.identities = identities
        self.pending = pending
        self.consents = consents
        self.upstream_visas = upstream_visas
        self.upstreams = upstreams
        self.verifier = verifier
        self.leeway = leeway
        self.max_json_depth = max_json_depth
        self.local = LocalAccounts(kernel, identities, issuer)
        self.limiter = RateLimiter(kernel)
        self.logins = Records(kernel, UPSTREAM_LOGINS)

    def connector(self, connector_id: str, kind: str) -> ConnectorSettings | None:
        return next((c for c in self.settings.connectors if c.id == connector_id and c.kind == kind), None)

    def audit(self, event: dict[str, Any], at: int) -> None:
        self.kernel.audit_append(event, at)

    # ------------------------------------------------------------------ shared steps

    def complete_login(
        self, session: BrowserSession, identity_id: str, connector_id: str, interaction: str | None, now: int
    ) -> Go:
        """Rotate the session id, record the login, and go on with the pending request (or ``next``)."""
        self.sessions.log_in(session, identity_id, connector_id, now)
        self.audit({"event": "login", "identity_id": identity_id, "connector": connector_id}, now)
        if interaction:
            return Go(self.pending.continue_location(interaction))
        return Go(safe_next(session.record.next) or "/account")

    def login_page_context(self, session: BrowserSession, interaction: str) -> dict[str, Any] | Refused:
        """What the login page shows: the connectors and, with a pending request, its client."""
        client_name = None
        if interaction:
            client_name = self.pending.client_name(interaction, session.browser)
            if client_name is None:
                return EXPIRED
        return {
            "interaction": interaction,
            "client_name": client_name,
            "local_connectors": [c for c in self.settings.connectors if c.kind == "local"],
            "upstream_connectors": [c for c in self.settings.connectors if c.kind == "oidc"],
            "csrf": lambda cid: session.csrf_token(f"login:{cid}:{interaction}"),
        }

    # ------------------------------------------------------------------ local login

    def local_login(
        self, connector_id: str, session: BrowserSession | None, form: dict[str, str], address: str, now: int
    ) -> Go | Refused | RateLimited | None:
        """A local login form: the next step, a refusal, a 429, or None for a wrong password (shown on the form)."""
        if self.connector(connector_id, "local") is None:
            return UNKNOWN_CONNECTOR
        interaction = form.get("interaction", "")
        if session is None or not session.csrf_ok(f"login:{connector_id}:{interaction}", form.get("csrf_token")):
            return CSRF_REFUSED
        username = form.get("username", "")
        keys = (
            (LOGIN_FAILURES, limit_key(connector_id, username, address)),
            (LOGIN_FAILURES_PER_ADDRESS, limit_key(address)),
        )
        try:
            self.limiter.check_all(keys)
        except RateLimited as exc:
            return exc
        identity_id = self.local.check_password(connector_id, username, form.get("password", ""))
        if identity_id is None:
            self.limiter.hit_all(keys)
            self.audit({"event": "login.failed", "connector": connector_id}, now)
            return None
        return self.complete_login(session, identity_id, connector_id, interaction or None, now)

    # ------------------------------------------------------------------ the account page

    def account(self, identity_id: str) -> dict[str, Any]:
        """What the account page shows."""
        identity = self.identities.get(identity_id)
        return {
            "identity_id": identity_id,
            "user_name": identity.display_name if identity and identity.display_name else identity_id,
            "links": self.identities.links_of(identity_id),
            "consents": self.consents.of(identity_id),
            "link_connectors": [c for c in self.settings.connectors if c.kind == "oidc"],
        }

    def withdraw_consent(self, session: BrowserSession | None, client_id: str, csrf_token: str | None) -> Go | Refused:
        """Withdraw a remembered consent, which also ends every grant the client holds for this researcher (OA-20)."""
        if session is None or session.identity_id is None:
            return Refused("Not logged in", "Log in first.", 401)
        if not session.csrf_ok(f"withdraw:{client_id}", csrf_token):
            return CSRF_REFUSED
        self.consents.withdraw(session.identity_id, client_id)
        return Go("/account")
