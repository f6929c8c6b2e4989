"""Server-side browser sessions: the cookie holds only a random id, the data lives on the store kernel.

- The record (kind ``session``) is keyed by ``s:`` + the SHA-256 of the cookie value, so a
  copy of the store holds no live cookie; its JSON layout is the first release's, so sessions
  survive an upgrade.
- Cookies are ``HttpOnly``, ``SameSite=Lax``, ``Path=/``; with an https issuer also ``Secure``
  and named with the ``__Host-`` prefix (no Domain attribute, so no sibling host can set it).
- :meth:`Sessions.log_in` gives the session a new id and CSRF key (session fixation), keeping
  only the browser binding that pending authorization requests are tied to.
- CSRF tokens are HMACs of a per-session key over a purpose string (``"consent:<interaction>"``),
  so a token from another session or another interaction never verifies (THREAT-MODEL OA-11).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from flask import Request, Response

from broker.store.kernel import Kernel
from broker.store.records import from_json, to_json

SESSION_KIND = "session"
MAX_COOKIE_CHARS = 128


@dataclass
class SessionRecord:
    """What a browser session holds (mutable: a request changes it, then it is saved)."""

    browser: str  # binds pending authorization requests to this browser across a login
    csrf_key: str
    identity_id: str | None = None
    auth_time: int = 0
    connector: str | None = None  # how the person logged in
    next: str | None = None  # where to go after logging in (a checked same-origin path)


@dataclass
class BrowserSession:
    """One browser's session: the cookie value and the record; see :class:`Sessions`."""

    cookie: str
    record: SessionRecord
    fresh: bool = False  # created or renamed on this request: the cookie must be set
    dirty: bool = False
    old_cookies: list[str] = field(default_factory=list)  # ids replaced on this request

    @property
    def identity_id(self) -> str | None:
        return self.record.identity_id

    @property
    def browser(self) -> str:
        return self.record.browser

    @property
    def auth_time(self) -> int:
        return self.record.auth_time

    @property
    def connector(self) -> str | None:
        return self.record.connector

    def remember_next(self, path: str) -> None:
        self.record.next = path
        self.dirty = True

    def csrf_token(self, purpose: str) -> str:
        """The CSRF token for one form (``purpose`` names the form and what it acts on)."""
        mac = hmac.new(self.record.csrf_key.encode(), purpose.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def csrf_ok(self, purpose: str, presented: str | None) -> bool:
        """Constant-time check of a presented CSRF token for this purpose."""
        if not presented or len(presented) > 100:
            return False
        return hmac.compare_digest(self.csrf_token(purpose).encode(), presented.encode("utf-8", "replace"))


def _key(cookie_value: str) -> str:
    return "s:" + hashlib.sha256(cookie_value.encode("utf-8")).hexdigest()


class Sessions:
    """Loads, creates, renames and saves browser sessions on the kernel.

    ``secure`` (our issuer is https) decides the cookie's name and ``Secure`` flag;
    ``lifetime_seconds`` is the session's and the cookie's lifetime.
    """

    def __init__(self, kernel: Kernel, *, secure: bool, lifetime_seconds: int) -> None:
        self._kernel = kernel
        self.secure = secure
        self.lifetime_seconds = lifetime_seconds
        self.cookie_name = "__Host-broker_session" if secure else "broker_session"

    def load(self, request: Request) -> BrowserSession | None:
        """The session named by the request's cookie, or None (no cookie, unknown, expired)."""
        value = request.cookies.get(self.cookie_name)
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        data = self._kernel.get(SESSION_KIND, _key(value))
        if data is None:
            return None
        return BrowserSession(cookie=value, record=from_json(SessionRecord, data))

    def load_or_new(self, request: Request) -> BrowserSession:
        return self.load(request) or self.new()

    @staticmethod
    def new() -> BrowserSession:
        record = SessionRecord(browser=secrets.token_urlsafe(16), csrf_key=secrets.token_urlsafe(32))
        return BrowserSession(cookie=secrets.token_urlsafe(32), record=record, fresh=True, dirty=True)

    def log_in(self, session: BrowserSession, identity_id: str, connector: str, auth_time: int) -> None:
        """Record a login: a new id and CSRF key (the old id stops working at save), who and when."""
        session.old_cookies.append(session.cookie)
        session.cookie = secrets.token_urlsafe(32)
        session.record.csrf_key = secrets.token_urlsafe(32)
        session.record.identity_id = identity_id
        session.record.connector = connector
        session.record.auth_time = auth_time
        session.fresh = session.dirty = True

    def save(self, session: BrowserSession, response: Response) -> None:
        """Write the record back (if changed), drop replaced ids, and set the cookie (if new)."""
        for old in session.old_cookies:
            self._kernel.delete(SESSION_KIND, _key(old))
        session.old_cookies.clear()
        if session.dirty:
            expires = int(time.time()) + self.lifetime_seconds
            self._kernel.put(SESSION_KIND, _key(session.cookie), to_json(session.record), expires_at=expires)
            session.dirty = False
        if session.fresh:
            response.set_cookie(
                self.cookie_name,
                session.cookie,
                max_age=self.lifetime_seconds,
                path="/",
                secure=self.secure,
                httponly=True,
                samesite="Lax",
            )
            session.fresh = False

    def end(self, session: BrowserSession, response: Response) -> None:
        """Log out: delete server-side and expire the cookie."""
        self._kernel.delete(SESSION_KIND, _key(session.cookie))
        response.delete_cookie(self.cookie_name, path="/", secure=self.secure, httponly=True, samesite="Lax")
