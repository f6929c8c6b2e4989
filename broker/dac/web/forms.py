"""What every DAC form page shares: the 303 after a POST, the login redirect, times, and the checks of a
form POST (session, same origin, CSRF token bound to the action) with the refusal pages.

See :mod:`broker.dac.web.pages` for the security rules these keep (THREAT-MODEL UI-01..UI-12).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import Response, request, url_for

from broker.dac.errors import DacError
from broker.dac.web.context import DacWeb, PageSession
from broker.web.pages import error_page


def redirect_303(location: str) -> Response:
    """A 303 See Other after a form POST (never cached); ``location`` is one of our own ``url_for`` URLs."""
    return Response("", status=303, headers={"Location": location, "Cache-Control": "no-store", "Pragma": "no-cache"})


def login_redirect() -> Response:
    return redirect_303(url_for("login.login_page", next=request.path))


def iso(ts: int | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _same_origin(issuer: str) -> bool:
    """UI-01: a state-changing request must come from one of our own pages.

    ``Sec-Fetch-Site`` (a header no page can set) decides when the browser sends it: our pages
    carry ``Referrer-Policy: no-referrer``, under which browsers send ``Origin: null`` even for
    same-origin form posts. Without it, ``Origin`` must be exactly ours (``null`` refused);
    with neither (older browsers, non-browser clients) the CSRF token alone decides.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    ours = urlsplit(issuer)
    return origin == f"{ours.scheme}://{ours.netloc}"


def checked_post(web: DacWeb, purpose: str) -> tuple[PageSession, str] | Response:
    """The session and actor of a form POST, or the refusal page (nothing is changed)."""
    session = web.load_session(request)
    if session is None or session.identity_id is None:
        return error_page("Not logged in", "Log in first.", 401)
    if not _same_origin(web.issuer) or not session.csrf_ok(purpose, request.form.get("csrf_token")):
        return error_page("Request refused", "The form was not sent from this page (CSRF check failed).", 403)
    return session, session.identity_id


def failure(exc: DacError) -> Response:
    title = {403: "Not allowed", 404: "Not found", 409: "Conflict"}.get(exc.status, "Cannot do that")
    detail = "; ".join(f"{k}: {v}" for k, v in exc.extra.get("fields", {}).items())
    return error_page(title, exc.message + (f" ({detail})" if detail else ""), exc.status)


# --------------------------------------------------------------------------- DAC member pages
