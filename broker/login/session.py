"""Server-side browser sessions: the cookie holds only a random id, the data lives in the store.

- The store key is the SHA-256 of the cookie value, so a copy of the store holds no live cookie.
- Cookies are ``HttpOnly``, ``SameSite=Lax``, ``Path=/``; with an https issuer also ``Secure``
  and named with the ``__Host-`` prefix (no Domain attribute, so no sibling host can set it).
- :meth:`BrowserSession.rotate` gives a new id at login (session fixation), keeping only the
  browser binding that pending authorization requests are tied to.
- CSRF tokens are HMACs of a per-session key over a purpose string (``"consent:<interaction>"``),
  so a token from another session or another interaction never verifies (THREAT-MODEL OA-11).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Request, Response

from broker.store.base import Store

if TYPE_CHECKING:
    from broker.settings import Settings

MAX_COOKIE_CHARS = 128


def cookie_name(settings: Settings) -> str:
    """``__Host-broker_session`` when the issuer is https, else ``broker_session``."""
    return "__Host-broker_session" if settings.issuer.startswith("https://") else "broker_session"


def _store_key(cookie_value: str) -> str:
    return "s:" + hashlib.sha256(cookie_value.encode("utf-8")).hexdigest()


@dataclass
class BrowserSession:
    """One browser's session; ``data`` is saved back with :meth:`save`."""

    cookie: str
    data: dict[str, Any] = field(default_factory=dict)
    fresh: bool = False  # created on this request: the cookie must be set
    dirty: bool = False

    @classmethod
    def new(cls) -> BrowserSession:
        return cls(
            cookie=secrets.token_urlsafe(32),
            data={"browser": secrets.token_urlsafe(16), "csrf_key": secrets.token_urlsafe(32)},
            fresh=True,
            dirty=True,
        )

    @classmethod
    def load(cls, settings: Settings, store: Store, request: Request) -> BrowserSession | None:
        """The session named by the request's cookie, or None (no cookie, unknown, expired)."""
        value = request.cookies.get(cookie_name(settings))
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        data = store.get_session(_store_key(value))
        if data is None:
            return None
        return cls(cookie=value, data=data)

    @classmethod
    def load_or_new(cls, settings: Settings, store: Store, request: Request) -> BrowserSession:
        return cls.load(settings, store, request) or cls.new()

    @property
    def identity_id(self) -> str | None:
        return self.data.get("identity_id")

    @property
    def browser(self) -> str:
        return str(self.data["browser"])

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.dirty = True

    def rotate(self, store: Store) -> None:
        """Replace the id and the CSRF key (at login); the old id stops working at once."""
        store.delete_session(_store_key(self.cookie))
        self.cookie = secrets.token_urlsafe(32)
        self.data["csrf_key"] = secrets.token_urlsafe(32)
        self.fresh = True
        self.dirty = True

    def end(self, settings: Settings, store: Store, response: Response) -> None:
        """Log out: delete server-side and expire the cookie."""
        store.delete_session(_store_key(self.cookie))
        response.delete_cookie(
            cookie_name(settings),
            path="/",
            secure=settings.issuer.startswith("https://"),
            httponly=True,
            samesite="Lax",
        )

    def save(self, settings: Settings, store: Store, response: Response) -> None:
        """Write the data back (if changed) and set the cookie (if new)."""
        ttl = settings.login.session_lifetime_seconds
        if self.dirty:
            store.put_session(_store_key(self.cookie), self.data, ttl)
        if self.fresh:
            response.set_cookie(
                cookie_name(settings),
                self.cookie,
                max_age=ttl,
                path="/",
                secure=settings.issuer.startswith("https://"),
                httponly=True,
                samesite="Lax",
            )

    # -- CSRF

    def csrf_token(self, purpose: str) -> str:
        """The CSRF token for one form (``purpose`` names the form and what it acts on)."""
        mac = hmac.new(str(self.data["csrf_key"]).encode(), purpose.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def csrf_ok(self, purpose: str, presented: str | None) -> bool:
        """Constant-time check of a presented CSRF token for this purpose."""
        if not presented or len(presented) > 100:
            return False
        return hmac.compare_digest(self.csrf_token(purpose).encode(), presented.encode("utf-8", "replace"))
