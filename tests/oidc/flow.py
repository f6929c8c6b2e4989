"""Driving the broker's browser flow over real HTTP, as a person with a browser would."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit
from weakref import WeakKeyDictionary

import jwt
import requests

from tests.oidc.broker_process import BrokerProcess

PASSWORD = "correct horse battery staple"

#: PKCE is required of every client by default (THREAT-MODEL OA-05). An authorization request made
#: by :func:`authorize` without a ``code_challenge`` argument gets a fresh S256 pair (pass
#: ``code_challenge=None`` to send none); the helpers that take a browser step remember the
#: verifier for a code the broker redirects with, and :func:`redeem` sends it when the test names
#: no verifier.
_SESSION_VERIFIER: WeakKeyDictionary[requests.Session, str] = WeakKeyDictionary()
_CODE_VERIFIER: dict[str, str] = {}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name} in page: {page[:500]}"
    return html.unescape(match.group(1))


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


@dataclass
class Client:
    client_id: str
    secret: str | None
    redirect_uri: str

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.client_id, self.secret) if self.secret else None


def authorize(http: requests.Session, broker: BrokerProcess, client: Client, **params: Any) -> requests.Response:
    """A browser's ``GET /authorize``; with a fresh PKCE pair unless ``code_challenge`` is given (see above)."""
    if "code_challenge" not in params:
        verifier, challenge = pkce_pair()
        params = {**params, "code_challenge": challenge, "code_challenge_method": "S256"}
        _SESSION_VERIFIER[http] = verifier
    else:
        _SESSION_VERIFIER.pop(http, None)
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": "openid ga4gh_passport_v1",
        **params,
    }
    query = {k: v for k, v in query.items() if v is not None}
    return noted(http, http.get(broker.url("/authorize"), params=query, allow_redirects=False, timeout=10))


def noted(http: requests.Session, response: requests.Response) -> requests.Response:
    """``response``, after tying a code in its redirect to the PKCE verifier of ``http``'s last request."""
    location = response.headers.get("Location", "")
    if "code=" in location:
        remember_verifier(http, query_of(location))
    return response


def follow(http: requests.Session, broker: BrokerProcess, response: requests.Response) -> requests.Response:
    """Follow one redirect that stays on the broker."""
    assert response.status_code in (302, 303), (response.status_code, response.text[:300])
    location = response.headers["Location"]
    if location.startswith("/"):
        location = broker.url(location)
    return noted(http, http.get(location, allow_redirects=False, timeout=10))


def login(
    http: requests.Session,
    broker: BrokerProcess,
    login_page: requests.Response,
    username: str = "alice",
    password: str = PASSWORD,
) -> requests.Response:
    """Submit the local login form of a login page; returns the answer (303 on success)."""
    assert login_page.status_code == 200, login_page.text[:300]
    page = login_page.text
    action = html.unescape(re.search(r'<form method="post" action="([^"]*/login/local/[^"]*)"', page).group(1))
    return noted(
        http,
        http.post(
            broker.url(action),
            data={
                "csrf_token": hidden(page, "csrf_token"),
                "interaction": hidden(page, "interaction"),
                "username": username,
                "password": password,
            },
            allow_redirects=False,
            timeout=10,
        ),
    )


def consent(
    http: requests.Session,
    broker: BrokerProcess,
    consent_page: requests.Response,
    decision: str = "allow",
    remember: bool = False,
) -> requests.Response:
    assert consent_page.status_code == 200, consent_page.text[:300]
    page = consent_page.text
    data = {"csrf_token": hidden(page, "csrf_token"), "interaction": hidden(page, "interaction"), "decision": decision}
    if remember:
        data["remember"] = "yes"
    return noted(http, http.post(broker.url("/consent"), data=data, allow_redirects=False, timeout=10))


def browser_code(
    http: requests.Session,
    broker: BrokerProcess,
    client: Client,
    *,
    username: str = "alice",
    remember: bool = False,
    **params: Any,
) -> tuple[dict[str, str], requests.Response]:
    """authorize -> login (if needed) -> consent (if needed) -> the client's redirect; returns its query."""
    response = authorize(http, broker, client, **params)
    assert response.status_code == 303, (response.status_code, response.text[:300])
    while not response.headers["Location"].startswith(client.redirect_uri):
        location = response.headers["Location"]
        page = follow(http, broker, response)
        if "/login" in location:
            response = login(http, broker, page, username=username)
        elif "/consent" in location:
            response = consent(http, broker, page, remember=remember)
        else:
            response = page
        assert response.status_code == 303, (response.status_code, response.text[:500])
    return query_of(response.headers["Location"]), response


def remember_verifier(http: requests.Session, query: dict[str, str]) -> None:
    """Tie the code of a redirect ``query`` to the PKCE verifier :func:`authorize` made for ``http``."""
    verifier = _SESSION_VERIFIER.get(http)
    if "code" in query and verifier is not None:
        _CODE_VERIFIER[query["code"]] = verifier


def redeem(
    broker: BrokerProcess, client: Client, code: str, verifier: str | None = None, **extra: str
) -> requests.Response:
    """The client redeems ``code``; with ``verifier``, or the one :func:`authorize` made for the code."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri, **extra}
    if verifier is None:
        verifier = _CODE_VERIFIER.get(code)
    if verifier is not None:
        data["code_verifier"] = verifier
    if client.secret is None:
        data["client_id"] = client.client_id
    return requests.post(broker.url("/token"), data=data, auth=client.auth, timeout=10)


def full_login(
    broker: BrokerProcess, client: Client, scope: str = "openid ga4gh_passport_v1", **params: Any
) -> dict[str, Any]:
    """A fresh browser logs in and the client redeems the code (with PKCE); returns the token response."""
    http = requests.Session()
    verifier, challenge = pkce_pair()
    query, _ = browser_code(
        http, broker, client, scope=scope, code_challenge=challenge, code_challenge_method="S256", state="st", **params
    )
    response = redeem(broker, client, query["code"], verifier)
    assert response.status_code == 200, response.text
    return response.json()


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def header(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)
