"""The app factory's own routes through Flask's test client: health, readiness, JWKS, errors, headers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.app import API_CSP, SECURITY_HEADERS, container_of, create_app
from broker.container import Container
from broker.keys.jwk import PRIVATE_MEMBERS, thumbprint
from broker.settings import Settings
from broker.store.settings import StoreSettings
from tests.support.keys import open_ring
from tests.support.legacy_store import open_store
from tests.support.redis_server import RedisServer
from tests.support.settings import replace


def prepared_settings(data_dir: Path, **changes: object) -> Settings:
    """Settings with a temp data_dir and a first key, as ``serve`` prepares them before workers start."""
    result = replace(Settings(data_dir=str(data_dir)), **changes)
    store = open_store(result)
    try:
        open_ring(result, store).maintain()
    finally:
        store.close()
    return result


def build(app_settings: Settings) -> Iterator[Flask]:
    app = create_app(Container.build(app_settings))
    app.testing = False  # errors go through the app's handlers, as in production
    yield app
    container_of(app).close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    yield from build(prepared_settings(tmp_path / "data"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def assert_security_headers(headers: object) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value, name  # type: ignore[index]
    assert headers["Content-Security-Policy"] == API_CSP  # type: ignore[index]


def test_healthz_is_200(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_200_when_store_and_keys_are_ok(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["checks"]["store"]["ok"] is True and body["checks"]["store"]["backend"] == "sqlite"
    assert body["checks"]["keys"] == {"ok": True}


def test_readyz_is_503_without_a_signing_key(tmp_path: Path) -> None:
    bare = Settings(data_dir=str(tmp_path / "data"))  # never prepared: no key
    for app in build(bare):
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["checks"]["keys"] == {"ok": False}
        assert response.get_json()["checks"]["store"]["ok"] is True


def test_readyz_is_503_when_the_store_is_unavailable(tmp_path: Path) -> None:
    """A real Redis that dies under a running app: the store raises StoreUnavailable, readyz says 503."""
    server = RedisServer(directory=tmp_path / "redis").start()
    try:
        app_settings = prepared_settings(
            tmp_path / "data", store=StoreSettings(backend="redis", url=server.url, timeout_seconds=0.5)
        )
        for app in build(app_settings):
            client = app.test_client()
            assert client.get("/readyz").status_code == 200
            server.kill()
            response = client.get("/readyz")
            assert response.status_code == 503
            body = response.get_json()
            assert body["status"] == "not_ready"
            assert body["checks"]["store"] == {"ok": False, "backend": "redis"}
            assert body["checks"]["keys"] == {"ok": True}  # file keys do not depend on the store
            assert_security_headers(response.headers)
            assert client.get("/healthz").status_code == 200  # alive, just not ready
    finally:
        server.stop()


def test_jwks_lists_the_active_key_by_thumbprint(app: Flask, client: FlaskClient) -> None:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "max-age=" in response.headers["Cache-Control"]
    keys = response.get_json()["keys"]
    active = container_of(app).keyring.signing_key()
    assert [k["kid"] for k in keys] == [active.kid]
    [jwk] = keys
    assert jwk["kid"] == thumbprint(jwk)
    assert jwk["alg"] == "ES256" and jwk["use"] == "sig" and jwk["kty"] == "EC"
    assert not PRIVATE_MEMBERS.intersection(jwk)  # OA-28, JWT-24: public members only


def test_jwks_follows_a_rotation_made_by_another_process(tmp_path: Path) -> None:
    app_settings = prepared_settings(tmp_path / "data")
    for app in build(app_settings):
        client = app.test_client()
        before = [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]
        store = open_store(app_settings)
        try:
            rotated = open_ring(app_settings, store).rotate(immediate=True)
        finally:
            store.close()
        deadline = time.monotonic() + 5
        while True:
            kids = [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]
            if rotated.kid in kids or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert kids == [rotated.kid, *before]  # the new key first (active), the old one still published


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/.well-known/jwks.json", 200),
        ("GET", "/no/such/route", 404),
        ("POST", "/healthz", 405),
        ("DELETE", "/.well-known/jwks.json", 405),
    ],
)
def test_security_headers_on_every_response(client: FlaskClient, method: str, path: str, status: int) -> None:
    response = client.open(path, method=method)
    assert response.status_code == status
    assert_security_headers(response.headers)
    assert "Strict-Transport-Security" not in response.headers  # http issuer: no HSTS


def test_hsts_only_for_an_https_issuer(tmp_path: Path) -> None:
    for app in build(prepared_settings(tmp_path / "data", issuer="https://broker.example/")):
        response = app.test_client().get("/no/such/route")
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_unknown_route_is_json_404_with_an_error_code(client: FlaskClient) -> None:
    response = client.get("/definitely/not/here")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == "not_found"
    assert isinstance(body["message"], str) and body["message"]


def test_wrong_method_is_json_405_with_allow(client: FlaskClient) -> None:
    response = client.put("/healthz", data=b"x")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/healthz", {"data": b"{not json", "content_type": "application/json"}),
        ("POST", "/no/such/route", {"data": b"x" * (3 * 1024 * 1024)}),
        ("GET", "/healthz", {"headers": {"Content-Length": "-5"}}),
        ("GET", "/healthz", {"headers": {"Content-Type": "multipart/form-data; boundary="}}),
        ("GET", "/.well-known/jwks.json", {"query_string": "a=%zz&b=\u0000&" + "c=1&" * 2000}),
        ("GET", "/%2e%2e/%2e%2e/etc/passwd", {}),
        ("GET", "/healthz/..%2f..%2f", {}),
        ("GET", "/" + "a" * 10_000, {}),
        ("GET", "/readyz", {"headers": {"Host": "\u0000bad host\u00ff"}}),
        ("GET", "/healthz", {"headers": {"Authorization": "Bearer " + "A" * 20_000}}),
        ("OPTIONS", "/healthz", {}),
        ("HEAD", "/.well-known/jwks.json", {}),
        ("TRACE", "/healthz", {}),
        ("BREW", "/healthz", {}),
    ],
)
def test_malformed_requests_never_get_a_500(client: FlaskClient, method: str, path: str, kwargs: dict) -> None:
    response = client.open(path, method=method, **kwargs)
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    assert_security_headers(response.headers)
    if response.status_code >= 400:
        assert response.get_json()["error"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.text(min_size=0, max_size=80), method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]))
def test_any_path_gets_a_json_answer_below_500(client: FlaskClient, path: str, method: str) -> None:
    response = client.open("/" + path.lstrip("/"), method=method, data=path.encode("utf-8", "surrogatepass"))
    assert response.status_code < 500
    assert_security_headers(response.headers)
    if response.status_code >= 400:
        assert response.get_json()["error"]
