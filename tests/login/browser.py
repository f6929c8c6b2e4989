"""A researcher's browser, headless: follows redirects across the broker(s) and the IdPs and fills in forms.

``Browser.drive`` keeps following redirects and answering pages until a redirect points
at ``until`` (usually the client's redirect URI) or a page it does not know comes back:

- a broker login page: the form of the connector named for that broker in ``connectors``
  (``local`` means the password form, with ``username``/``password``);
- a broker consent page: allow (unless ``consent`` is False: the page is returned);
- an oidc-provider interaction page (tests/peers/idp.mjs): log in as ``accounts[<idp origin>]``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from tests.oidc.flow import PASSWORD

_FORM = re.compile(r'<form method="post" action="([^"]*)">(.*?)</form>', re.S)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


def forms(page: str) -> list[tuple[str, dict[str, str]]]:
    """(action, hidden fields) of each POST form of one of our pages."""
    return [
        (html.unescape(action), {n: html.unescape(v) for n, v in _HIDDEN.findall(body)})
        for action, body in _FORM.findall(page)
    ]


def form_for(page: str, action_suffix: str) -> tuple[str, dict[str, str]]:
    found = [f for f in forms(page) if f[0].endswith(action_suffix)]
    assert found, f"no form posting to *{action_suffix} in: {page[:800]}"
    return found[0]


@dataclass
class Browser:
    """One browser (cookie jar) and what its owner answers where."""

    connectors: dict[str, str] = field(default_factory=dict)  # broker origin -> connector id
    accounts: dict[str, str] = field(default_factory=dict)  # IdP origin -> account to log in as
    username: str = "alice"
    password: str = PASSWORD
    consent: bool = True  # False: stop at (return) our consent page
    http: requests.Session = field(default_factory=requests.Session)

    def get(self, url: str, **params: str) -> requests.Response:
        return self.http.get(url, params=params or None, allow_redirects=False, timeout=15)

    def post(self, url: str, data: dict[str, str]) -> requests.Response:
        return self.http.post(url, data=data, allow_redirects=False, timeout=15)

    def next(self, response: requests.Response) -> requests.Response:
        """Follow one redirect."""
        assert response.status_code in (302, 303), (response.status_code, response.text[:500])
        return self.get(urljoin(response.url, response.headers["Location"]))

    def submit(self, page: requests.Response, action_suffix: str, **extra: str) -> requests.Response:
        """Post the form of ``page`` whose action ends with ``action_suffix``."""
        action, fields = form_for(page.text, action_suffix)
        return self.post(urljoin(page.url, action), {**fields, **extra})

    def drive(self, response: requests.Response, until: str, steps: int = 40) -> requests.Response:
        """Go on until a redirect to ``until`` (returned, not followed) or an unknown page (returned)."""
        for _ in range(steps):
            if response.status_code in (302, 303):
                if urljoin(response.url, response.headers["Location"]).startswith(until):
                    return response
                response = self.next(response)
                continue
            if response.status_code != 200:
                return response
            path = urlsplit(response.url).path
            here = origin(response.url)
            if re.fullmatch(r"/interaction/[A-Za-z0-9_-]+", path) and here in self.accounts:
                response = self.post(response.url + "/login", {"login": self.accounts[here]})
            elif path == "/login" and here in self.connectors:
                connector = self.connectors[here]
                if connector == "local":
                    response = self.submit(
                        response, "/login/local/local", username=self.username, password=self.password
                    )
                else:
                    response = self.submit(response, f"/login/upstream/{connector}")
            elif path == "/consent" and self.consent:
                response = self.submit(response, "/consent", decision="allow")
            else:
                return response
        raise AssertionError("too many steps")
