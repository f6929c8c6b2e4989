"""The shape of every error: browsers get pages, programs and API routes get JSON.

Through the real app (``create_app`` over ``Container.build``) and Flask's test client. A
browser is a request whose ``Accept`` header is the one browsers send; a program sends
``Accept: application/json`` (or ``*/*``, or nothing). API route families (/api, /token,
/userinfo, /ga4gh, /data, /.well-known, ...) answer JSON to both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from broker.app import API_CSP
from broker.errors import BrokerError, Unavailable
from broker.web.pages import PAGE_CSP
from broker.web.rate_limit import Limit, RateLimited
from tests.test_app import build, prepared_settings

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"}
PROGRAM = {"Accept": "application/json"}
CURL = {"Accept": "*/*"}


def _raise(status: int) -> Any:
    """A view failing the way the broker's services fail, with ``status``."""
    if status == 429:
        raise RateLimited(Limit("test", 1, 60), retry_after=42)
    if status == 503:
        raise Unavailable()
    raise BrokerError(f"refused with {status} for the test", status=status, code=f"test_{status}")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    for built in build(prepared_settings(tmp_path / "data")):
        # The same failure on a page route and on an API route, through the app's own handlers.
        built.add_url_rule("/pages-test/<int:status>", "pages_test", _raise)
        built.add_url_rule("/api/errors-test/<int:status>", "api_test", _raise)
        yield built


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _assert_page(response: Any, status: int) -> str:
    assert response.status_code == status
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == PAGE_CSP
    assert "Accept" in response.headers["Vary"]
    text: str = response.get_data(as_text=True)
    assert '<meta name="referrer" content="no-referrer">' in text  # the shared layout (base.html)
    assert " style=" not in text and "<script" not in text
    return text


def _assert_json(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    assert code is None or body["error"] == code
    return body


# ----------------------------------------------------------------------- errors, both shapes


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 429, 503])
def test_a_browser_gets_an_error_page_and_a_program_json_for_every_status(client: FlaskClient, status: int) -> None:
    text = _assert_page(client.get(f"/pages-test/{status}", headers=BROWSER), status)
    code = {429: "too_many_requests", 503: "unavailable"}.get(status, f"test_{status}")
    assert f"<code>{code}</code>" in text and "Go to the start page" in text
    for headers in (PROGRAM, CURL, {}):
        _assert_json(client.get(f"/pages-test/{status}", headers=headers), status, code)
    if status in (429, 503):
        assert client.get(f"/pages-test/{status}", headers=BROWSER).headers["Retry-After"]


@pytest.mark.parametrize("status", [400, 403, 404, 429, 503])
def test_api_routes_answer_json_even_to_a_browser(client: FlaskClient, status: int) -> None:
    response = client.get(f"/api/errors-test/{status}", headers=BROWSER)
    _assert_json(response, status)
    assert response.headers["Content-Security-Policy"] == API_CSP


def test_an_unknown_page_is_a_404_page_for_a_browser_and_json_for_a_program(client: FlaskClient) -> None:
    text = _assert_page(client.get("/no/such/page", headers=BROWSER), 404)
    assert "Page not found" in text and "<code>not_found</code>" in text
    _assert_json(client.get("/no/such/page", headers=PROGRAM), 404, "not_found")


def test_a_wrong_method_is_a_405_page_or_json_both_with_allow(client: FlaskClient) -> None:
    page = client.post("/", headers=BROWSER)
    assert "Method not allowed" in _assert_page(page, 405) and "GET" in page.headers["Allow"]
    data = client.post("/", headers=PROGRAM)
    _assert_json(data, 405, "method_not_allowed")
    assert "GET" in data.headers["Allow"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/authorize", 400, "invalid_request"),  # unknown client: a page, never a redirect
        ("GET", "/consent", 400, "invalid_request"),
        ("POST", "/login/local/local", 403, "forbidden"),  # no CSRF token
        ("POST", "/login/local/no-such-connector", 404, "not_found"),
        ("POST", "/dac/datasets/X/grants", 401, "login_required"),
    ],
)
def test_pages_that_refuse_give_a_page_to_browsers_and_json_to_programs(
    client: FlaskClient, method: str, path: str, status: int, code: str
) -> None:
    _assert_page(client.open(path, method=method, headers=BROWSER), status)
    _assert_json(client.open(path, method=method, headers=PROGRAM), status, code)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/dac/me", 401),
        ("GET", "/api/no/such/thing", 404),
        ("GET", "/token", 405),
        ("GET", "/userinfo", 401),
        ("GET", "/.well-known/no-such-document", 404),
        ("GET", "/data/no-such-dataset/x.bam", 401),
        ("GET", "/ga4gh/drs/v1/objects/nothing", 400),  # not a DRS object id
        ("POST", "/healthz", 405),
    ],
)
def test_api_route_families_answer_errors_in_json_whatever_the_accept_header(
    client: FlaskClient, method: str, path: str, status: int
) -> None:
    for headers in (BROWSER, PROGRAM):
        _assert_json(client.open(path, method=method, headers=headers), status)


def test_a_body_over_the_limit_is_a_413_page_or_json(client: FlaskClient) -> None:
    big = b"x" * (3 * 1024 * 1024)
    _assert_page(client.post("/login/local/local", data=big, headers=BROWSER), 413)
    _assert_json(client.post("/login/local/local", data=big, headers=PROGRAM), 413, "request_entity_too_large")
