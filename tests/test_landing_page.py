"""``/``: a landing page for a browser, a small JSON index for a program.

Through the real app (``create_app`` over ``Container.build``) and Flask's test client.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from broker.app import API_CSP, container_of
from broker.web.pages import PAGE_CSP
from tests.test_app import build, prepared_settings

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"}
PROGRAM = {"Accept": "application/json"}
CURL = {"Accept": "*/*"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    yield from build(prepared_settings(tmp_path / "data"))


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


def test_the_landing_page_names_the_product_and_links_login_account_dac_and_the_api_documents(
    client: FlaskClient,
) -> None:
    text = _assert_page(client.get("/", headers=BROWSER), 200)
    assert "<h1>ga4gh-broker</h1>" in text
    links = set(re.findall(r'href="([^"]+)"', text))
    assert {
        "/login?next=/account",
        "/account",
        "/account/visas",
        "/dac",
        "/.well-known/openid-configuration",
        "/api/openapi.json",
    } <= links


def test_every_link_of_the_landing_page_leads_somewhere(client: FlaskClient) -> None:
    text = client.get("/", headers=BROWSER).get_data(as_text=True)
    for link in re.findall(r'href="([^"]+)"', text):
        if link.startswith("#"):
            continue  # a place on this very page (the skip link)
        response = client.get(link.replace("&amp;", "&"), headers=BROWSER)
        assert response.status_code in (200, 303), (link, response.status_code)
        if response.status_code == 303:
            assert response.headers["Location"].startswith("/login"), link


def test_a_program_asking_for_the_root_gets_a_json_index_of_absolute_links(app: Flask, client: FlaskClient) -> None:
    issuer = container_of(app).settings.issuer.rstrip("/")
    for headers in (PROGRAM, CURL, {}):
        response = client.get("/", headers=headers)
        body = _assert_json_index(response)
        assert body["links"]["openid_configuration"] == f"{issuer}/.well-known/openid-configuration"
        assert body["links"]["openapi"] == f"{issuer}/api/openapi.json"
        assert body["links"]["dac"] == f"{issuer}/dac" and body["links"]["account"] == f"{issuer}/account"
        assert body["issuer"] == container_of(app).settings.issuer


def _assert_json_index(response: Any) -> dict[str, Any]:
    """A 200 JSON index with the API headers and the product's name and version."""
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Security-Policy"] == API_CSP and "Accept" in response.headers["Vary"]
    body: dict[str, Any] = response.get_json()
    assert body["name"] == "ga4gh-broker" and body["version"]
    return body


def test_behind_a_proxy_that_mounts_the_broker_under_a_path_the_links_keep_that_path(client: FlaskClient) -> None:
    text = client.get("/", headers=BROWSER, base_url="http://localhost/broker/").get_data(as_text=True)
    links = [link for link in re.findall(r'href="([^"]+)"', text) if not link.startswith("#")]
    assert links and all(link.startswith("/broker/") for link in links), links
    missing = client.get("/nope", headers=BROWSER, base_url="http://localhost/broker/").get_data(as_text=True)
    assert 'href="/broker/"' in missing  # the error page's way back, too
