"""No route answers 500 to malformed input (THREAT-MODEL section 0: every item implicitly asserts "not 5xx").

Every rule of the assembled app is called with hostile variants: deep JSON, invalid UTF-8, garbage
form fields, forged bearer tokens with deep or huge headers, odd path values. A 503 is allowed only
for the store being down, which never happens here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from broker.app import create_app
from broker.container import Container
from broker.serve.production import prepare
from broker.settings import load_settings


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


DEEP = b"[" * 50_000
TOKENS = [
    "garbage",
    f"{b64(DEEP)}.{b64(DEEP)}.sig",
    f"{b64(b'[' * 3000)}.e30.sig",
    b64(b'{"alg":"none","typ":"at+jwt"}') + "." + b64(b"{}") + ".",
    b64(b'{"alg":"ES256","typ":"vnd.ga4gh.passport+jwt"}') + "." + b64(b"[1]") + ".AAAA",
    "a.b.c.d.e",
    "\u00e9\u00e9.\u00e9.\u00e9",
]
BODIES: list[tuple[bytes, str]] = [
    (DEEP, "application/json"),
    (b'{"passports": [' + b"[" * 5000 + b"]}", "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"\xff\xfe=\x00&a=%ff%fe&grant_type=%00", "application/x-www-form-urlencoded"),
    (b"grant_type=authorization_code&code=" + b"A" * 100_000, "application/x-www-form-urlencoded"),
    (b'{"dataset": {"$ne": 1}, "identity": [], "end": "tomorrow"}', "application/json"),
]
QUERY = "a=1&b=2&c=3&d=4&e=5&expires=1&signature=x"
PATH_VALUES = ["x", "%00", "..%2f..%2fetc", "a" * 3000, "%ff%fe", "EGAD00001000001"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    data = tmp_path_factory.mktemp("no500")
    settings = load_settings(None, environ={"BROKER_DATA_DIR": str(data)})
    prepare(settings)  # what `serve` does first: schema and the first signing key
    app = create_app(Container.build(settings))
    app.config["TESTING"] = False  # exercise the real error handlers
    return app


@pytest.fixture(scope="module")
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


def concrete_paths(app: Flask) -> list[tuple[str, set[str]]]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for value in PATH_VALUES:
            path = re.sub(r"<[^>]+>", value, rule.rule)
            out.append((path, set(rule.methods or ()) - {"OPTIONS"}))
    return out


def test_every_route_survives_hostile_input(app: Flask, client: FlaskClient) -> None:
    failures = []
    for path, methods in concrete_paths(app):
        for method in sorted(methods):
            variants = [{}] + [{"headers": {"Authorization": f"Bearer {t}"}} for t in TOKENS]
            variants += [
                {"query_string": QUERY},
                {"headers": {"X-Original-URI": f"/data/x/y?{QUERY}", "X-Original-Method": "GET"}},
            ]
            if method in {"POST", "PUT", "PATCH", "DELETE"}:
                variants += [{"data": body, "content_type": ctype} for body, ctype in BODIES]
            for kwargs in variants:
                response = client.open(path, method=method, **kwargs)
                if response.status_code >= 500:
                    failures.append(f"{method} {path[:80]} {str(kwargs)[:80]} -> {response.status_code}")
    assert not failures, "\n".join(failures[:40])


def test_hostile_query_strings_on_oidc_endpoints(client: FlaskClient) -> None:
    for path in ("/authorize", "/userinfo", "/device", "/logout", "/login", "/.well-known/openid-configuration"):
        for query in (
            "client_id=%ff&redirect_uri=%00",
            "a=" + "b" * 20_000,
            "scope=" + "%20" * 3000,
            "response_type=code&client_id=x&redirect_uri=javascript:alert(1)",
        ):
            response = client.get(f"{path}?{query}")
            assert response.status_code < 500, (path, query[:40], response.status_code)


def test_data_dir_is_left_with_only_broker_files(tmp_path: Path) -> None:
    """Building the app writes nothing outside its data directory (no import-time side effects)."""
    before = set(Path.cwd().iterdir())
    settings = load_settings(None, environ={"BROKER_DATA_DIR": str(tmp_path)})
    container = Container.build(settings)
    create_app(container)
    container.close()
    assert set(Path.cwd().iterdir()) == before
