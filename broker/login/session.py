"""Old import path of the browser session (the DAC pages use ``BrowserSession.load`` until they take a
:class:`broker.web.session.Sessions` from the container)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from broker.web.session import BrowserSession as _Session
from broker.web.session import Sessions

if TYPE_CHECKING:
    from broker.settings import Settings


def sessions_for(settings: Settings, store: Any) -> Sessions:
    """The :class:`Sessions` the app uses, for ``settings`` and a store with a kernel."""
    return Sessions(
        store.kernel,
        secure=settings.issuer.startswith("https://"),
        lifetime_seconds=settings.login.session_lifetime_seconds,
    )


class BrowserSession:
    """``BrowserSession.load(settings, store, request)`` as the first release spelled it."""

    @staticmethod
    def load(settings: Settings, store: Any, request: Request) -> _Session | None:
        return sessions_for(settings, store).load(request)
