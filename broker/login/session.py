"""Old import path of the browser session (the DAC pages use ``BrowserSession.load`` until they take a
:class:`broker.web.session.Sessions` from the container)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from broker.web import session as web_session
from broker.web.session import Sessions

if TYPE_CHECKING:
    from broker.settings import Settings


def sessions_for(settings: Settings, store: Any) -> Sessions:
    """The :class:`Sessions` the app uses, for the root ``settings`` and a store with a kernel."""
    return Sessions(
        store.kernel,
        secure=settings.issuer.startswith("https://"),
        lifetime_seconds=settings.login.session_lifetime_seconds,
    )


class BrowserSession(web_session.BrowserSession):
    """:class:`broker.web.session.BrowserSession` with the first release's ``load(settings, store, request)``."""

    @classmethod
    def load(cls, settings: Settings, store: Any, request: Request) -> BrowserSession | None:
        found = sessions_for(settings, store).load(request)
        return cls(cookie=found.cookie, record=found.record) if found is not None else None
