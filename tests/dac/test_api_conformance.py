"""Issue 11 "API conformance": schemathesis drives the DAC and permissions API from ``/api/openapi.json``.

Bounded and deterministic (``derandomize``, a fixed number of examples per operation), with real
credentials: a site admin's access token signed by our key ring for ``/api/dac``, and a client's
HTTP Basic secret for ``/api/permissions``. Every answer must be no server error, a documented
status with the documented content type, headers and body schema, and an ``Allow`` header that
names what the route serves. Requests the schema allows but a business rule refuses (an
unknown identity, a dataset no DAC governs) are 400s the document lists, not mismatches, so
schemathesis's ``positive_data_acceptance`` check is not run.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi import checks

from broker.app import create_app
from broker.container import Container
from broker.dac.web.api import ROUTES, openapi_path
from broker.oidc.passwords import hash_secret
from broker.oidc.records import Client
from broker.oidc.tokens import mint_access_token
from tests.dac.conftest import ISSUER, SettingsWithDac, dac_config
from tests.dac.test_api import SECRET
from tests.support.keys import open_ring
from tests.support.legacy_store import open_store

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.allow_header_conformance,
]


class Api:
    """The app, its loaded schema, and the credentials each operation is called with."""

    def __init__(self, tmp_path: Path) -> None:
        settings = SettingsWithDac(issuer=ISSUER, data_dir=str(tmp_path / "data"), dac=dac_config())
        self.store = open_store(settings)
        ring = open_ring(settings, self.store, auto_maintain_seconds=None)
        ring.maintain()
        self.store.put_client(
            Client(client_id="peer", name="Peer", scopes=("ga4gh_permissions",), secret_hash=hash_secret(SECRET))
        )
        self.app = create_app(Container.build(settings, kernel=self.store.kernel))
        admin, _ = mint_access_token(
            ring,
            settings,
            sub="admin",
            client_id="dac-portal",
            scope=("openid", "dac"),
            grant="g-a",
            now=int(time.time()),
        )
        self.bearer = {"Authorization": f"Bearer {admin}"}
        self.basic = {"Authorization": "Basic " + base64.b64encode(f"peer:{SECRET}".encode()).decode()}
        self.schema = schemathesis.openapi.from_wsgi("/api/openapi.json", self.app)

    def headers_for(self, path: str) -> dict[str, str]:
        return self.basic if path.startswith("/api/permissions") else self.bearer


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    made = Api(tmp_path_factory.mktemp("conformance"))
    yield made
    made.store.close()


def test_every_operation_of_the_openapi_document_conforms_under_schemathesis(api: Api) -> None:
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api.schema.get_all_operations()]
    driven = {op.label for op in operations}
    documented = {f"{r.method} {openapi_path(r.rule)}" for r in ROUTES if r.rule != "/api/openapi.json"}
    assert driven == documented  # every route but the document itself (schemathesis does not drive it)
    for operation in operations:
        failure = _drive(operation, api.headers_for(operation.path))
        if failure is not None:
            failures[operation.label] = failure
    assert failures == {}, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def _drive(operation: Any, headers: dict[str, str]) -> str | None:
    """Run the bounded examples of one operation; its finding (schemathesis shrinks to one per operation), or None."""

    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def call(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        call()
    except BaseException as exc:  # a FailureGroup (not an Exception): what schemathesis found
        return str(exc)[:1500]
    return None


def test_an_optional_body_may_be_left_out_without_a_415(api: Api) -> None:
    """Issue 11: routes whose body is optional (ReasonOptional, Empty) answer a request without one on its merits."""
    client = api.app.test_client()
    optional = [r for r in ROUTES if r.body in ("ReasonOptional", "Empty")]
    assert optional
    for route in optional:
        path = openapi_path(route.rule).replace("{", "x-").replace("}", "")
        answer = client.open(path, method=route.method, headers=api.bearer)
        assert answer.status_code != 415, (route.method, path, answer.get_data(as_text=True)[:200])


def test_options_of_the_import_route_claims_only_what_it_serves(api: Api) -> None:
    """Issue 11: ``/api/dac/grants/import`` is not also read as ``/api/dac/grants/<grant_id>`` (which has GET)."""
    client = api.app.test_client()
    allow = client.options("/api/dac/grants/import", headers=api.bearer).headers["Allow"]
    assert {m.strip() for m in allow.split(",")} == {"POST", "OPTIONS"}
    assert client.get("/api/dac/grants/import", headers=api.bearer).status_code == 405
    assert client.get("/api/dac/grants/importable", headers=api.bearer).status_code == 404  # an id, not the route
