"""Applying for access from the researcher's side: the broker's ``/api/dac/applications`` API.

The researcher's access token must carry the ``dac`` scope (``ga4gh-broker login --scope``);
without it the broker answers 403 ``insufficient_scope`` and :func:`apply` says how to log in
again. Tokens are sent only as a Bearer header and never printed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.client.http import Bearer, ClientError, check_url, printable
from broker.client.oauth import TokenSource

API = "/api/dac/applications"


@dataclass(frozen=True)
class ApplicationRequest:
    """What the researcher asks for: datasets of one DAC and the form's answers."""

    datasets: Sequence[str]
    title: str = ""
    purpose_codes: Sequence[str] = ()
    purpose_text: str = ""
    institution: str = ""
    co_applicants: Sequence[str] = ()
    accept_terms: bool = False
    submit: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _call(tokens: TokenSource, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One API call with the logged-in user's token (renewed once after a 401); errors as ClientError."""
    url = check_url(tokens.broker.rstrip("/") + path)
    for attempt in (1, 2):
        token = tokens.access_token()
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        status, answer, _ = tokens.http.json(method, url, auth=Bearer(token), **kwargs)
        if status in (200, 201):
            return answer
        if status == 401 and attempt == 1 and tokens.refresh_after_401(token):
            continue
        raise refusal(status, answer, tokens.broker)
    raise AssertionError("unreachable")


def refusal(status: int, body: dict[str, Any], broker: str) -> ClientError:
    """The broker's error answer as one line a person can act on (field problems named)."""
    code = printable(body.get("error", f"http_{status}"), 64)
    message = printable(body.get("message", "the broker refused the request"), 300)
    if code == "insufficient_scope":
        message += (
            f" Log in with the dac scope: ga4gh-broker login --broker {broker} --scope 'openid profile email dac'"
        )
    fields = body.get("fields")
    if isinstance(fields, dict) and fields:
        message += " (" + "; ".join(f"{printable(k, 40)}: {printable(v, 120)}" for k, v in fields.items()) + ")"
    return ClientError(code, message)


def form(tokens: TokenSource, datasets: Sequence[str]) -> dict[str, Any]:
    """The DAC's form for ``datasets``: fields, purpose codes and the terms to accept."""
    return _call(tokens, "GET", f"{API}/form?datasets=" + ",".join(datasets))


def apply(tokens: TokenSource, request: ApplicationRequest) -> dict[str, Any]:
    """Start (and by default submit) an application; with ``accept_terms`` the current terms of
    every dataset, as the broker's form shows them, are accepted."""
    body: dict[str, Any] = {"datasets": list(request.datasets), "submit": request.submit}
    for name in ("title", "purpose_text", "institution"):
        value = getattr(request, name)
        if value:
            body[name] = value
    if request.purpose_codes:
        body["purpose_codes"] = list(request.purpose_codes)
    if request.co_applicants:
        body["co_applicants"] = list(request.co_applicants)
    if request.accept_terms:
        terms = form(tokens, request.datasets).get("terms", [])
        body["accepted_terms"] = [
            t["accept"] for t in terms if isinstance(t, dict) and isinstance(t.get("accept"), str)
        ]
    return _call(tokens, "POST", API, body)


def status(tokens: TokenSource, application_id: str) -> dict[str, Any]:
    """One of the user's applications, with its comments."""
    if not application_id or "/" in application_id or len(application_id) > 64:
        raise ClientError("bad_id", "That is not an application id.", 2)
    return _call(tokens, "GET", f"{API}/{application_id}")
