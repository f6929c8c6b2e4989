"""The DAC REST API and permissions API with real access tokens signed by our key ring.

Every route and role: anonymous, researcher, member of DAC A, member of DAC B, chair, admin
(GA-12, UI-08), mass assignment (GA-13), strict JSON input (UI-01, UI-12), the permissions API
for clients (REMS #2631), the revocation hook (GA-14), and the OpenAPI document against the
URL map.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from broker.app import container_of, create_app
from broker.container import Container
from broker.core.models import CONTROLLED_ACCESS_GRANTS
from broker.dac.repository import DacRepository
from broker.dac.web.api import ROUTES, openapi_path
from broker.identity.records import Identity
from broker.keys.ring import KeyRing
from broker.oidc.passwords import hash_secret
from broker.oidc.rate_limit import CLIENT_AUTH_FAILURES_PER_ADDRESS, PERMISSIONS_REQUESTS
from broker.oidc.records import Client
from broker.oidc.tokens import mint_access_token
from broker.visas.minting import record_of_jti, revocation_check
from broker.web.rate_limit import Limit
from tests.dac.conftest import DAY, ISSUER, SettingsWithDac, dac_config, kernel_of
from tests.support.keys import open_ring
from tests.support.legacy_store import Store

ROLES = (None, "researcher", "member-a", "member-b", "chair-a", "admin")
SECRET = "a-long-client-secret-for-tests-only"


@pytest.fixture
def settings(tmp_path: Path) -> SettingsWithDac:
    """SQLite only: these tests prove the HTTP adapter; the services run on both backends elsewhere."""
    return SettingsWithDac(issuer=ISSUER, data_dir=str(tmp_path / "data"), dac=dac_config())


@pytest.fixture
def ring(settings: SettingsWithDac, store: Store) -> KeyRing:
    ring = open_ring(settings, store, auto_maintain_seconds=None)
    ring.maintain()
    return ring


@pytest.fixture
def hooked() -> list[str]:
    """The record ids this process heard revoked (the container's revocation listeners)."""
    return []


@pytest.fixture
def app(settings: SettingsWithDac, store: Store, ring: KeyRing, hooked: list[str]) -> Flask:
    container = Container.build(settings, kernel=store.kernel)
    container.revocations.listeners.append(hooked.append)
    return create_app(container)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


def token(ring: KeyRing, settings: SettingsWithDac, who: str, scope: tuple[str, ...] = ("openid", "dac")) -> str:
    jwt, _ = mint_access_token(
        ring, settings, sub=who, client_id="dac-portal", scope=scope, grant=f"g-{who}", now=int(time.time())
    )
    return jwt


def auth(ring: KeyRing, settings: SettingsWithDac, who: str | None) -> dict[str, str]:
    return {} if who is None else {"Authorization": f"Bearer {token(ring, settings, who)}"}


def later(days: int) -> int:
    return int(time.time()) + days * DAY


@pytest.fixture
def prepared(client: FlaskClient, ring: KeyRing, settings: SettingsWithDac, store: Store) -> dict[str, Any]:
    store.put_identity(Identity(id="extra", created_at=1))
    admin = auth(ring, settings, "admin")
    a = client.post(
        "/api/dac/grants", json={"identity": "researcher", "dataset": "EGAD-A1", "end": later(30)}, headers=admin
    ).get_json()
    b = client.post(
        "/api/dac/grants", json={"identity": "researcher", "dataset": "EGAD-B1", "end": later(30)}, headers=admin
    ).get_json()
    assert client.post("/api/dac/committees/A/members", json={"identity": "extra"}, headers=admin).status_code == 201
    return {"a": a["id"], "b": b["id"]}


def _calls(ids: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """action -> (method, path, request kwargs) on DAC A's resources."""
    csv = f"identity,dataset,end\nresearcher-2,A-5,{later(9)}\n"
    return {
        "grant": (
            "POST",
            "/api/dac/grants",
            {"json": {"identity": "researcher-2", "dataset": "EGAD-A1", "end": later(10)}},
        ),
        "renew": ("POST", f"/api/dac/grants/{ids['a']}/renew", {"json": {"end": later(60)}}),
        "revoke": ("POST", f"/api/dac/grants/{ids['a']}/revoke", {"json": {"reason": "ended"}}),
        "get": ("GET", f"/api/dac/grants/{ids['a']}", {}),
        "list_dac": ("GET", "/api/dac/grants?dac=A", {}),
        "list_dataset": ("GET", "/api/dac/grants?dataset=EGAD-A1&live=true", {}),
        "import": ("POST", "/api/dac/grants/import", {"data": csv, "content_type": "text/csv"}),
        "audit": ("GET", "/api/dac/datasets/EGAD-A1/audit", {}),
        "members_list": ("GET", "/api/dac/committees/A/members", {}),
        "members_add": ("POST", "/api/dac/committees/A/members", {"json": {"identity": "researcher-2"}}),
        "members_remove": ("DELETE", "/api/dac/committees/A/members/extra", {"json": {"reason": "left"}}),
    }


# Members decide applications; direct grants and imports are for chairs and admins (issue 15).
MEMBER_A = {"renew", "revoke", "get", "list_dac", "list_dataset", "audit", "members_list"}
ALL = MEMBER_A | {"grant", "import", "members_add", "members_remove"}
ALLOWED: dict[str | None, set[str]] = {
    None: set(),
    "researcher": set(),
    "member-b": set(),
    "member-a": MEMBER_A,
    "chair-a": ALL,
    "admin": ALL,
}


def _snapshot(store: Store) -> list[object]:
    """Every grant of the people the calls name, and DAC A's memberships."""
    repo = DacRepository(kernel_of(store))
    grants: list[object] = [g for who in ("researcher", "researcher-2", "extra") for g in repo.grants_of(who)]
    return [*grants, *repo.memberships_of("A")]


@pytest.mark.parametrize("action", sorted(ALL))
@pytest.mark.parametrize("who", ROLES, ids=[str(r) for r in ROLES])
def test_ga12_ui08_api_role_matrix(
    client: FlaskClient,
    ring: KeyRing,
    settings: SettingsWithDac,
    store: Store,
    prepared: dict[str, Any],
    who: str | None,
    action: str,
) -> None:
    method, path, kwargs = _calls(prepared)[action]
    before = _snapshot(store)
    response = client.open(path, method=method, headers=auth(ring, settings, who), **kwargs)
    if action in ALLOWED[who]:
        assert response.status_code in (200, 201), response.get_json()
    else:
        expected = 401 if who is None else 403
        assert response.status_code == expected, response.get_json()
        assert response.get_json()["error"] == ("invalid_token" if who is None else "forbidden")
        assert _snapshot(store) == before


def test_ui08_every_dac_route_needs_a_token_and_the_dac_scope(
    client: FlaskClient, ring: KeyRing, settings: SettingsWithDac
) -> None:
    no_scope = {"Authorization": f"Bearer {token(ring, settings, 'admin', ('openid', 'ga4gh_passport_v1'))}"}
    checked = 0
    for route in ROUTES:
        if route.policy != "dac":
            continue
        path = openapi_path(route.rule).replace("{", "").replace("}", "")
        anonymous = client.open(path, method=route.method, json={})
        assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["WWW-Authenticate"], route.rule
        scoped = client.open(path, method=route.method, json={}, headers=no_scope)
        assert scoped.status_code == 403 and scoped.get_json()["error"] == "insufficient_scope", route.rule
        assert 'error="insufficient_scope"' in scoped.headers["WWW-Authenticate"]
        forged = client.open(path, method=route.method, json={}, headers={"Authorization": "Bearer a.b.c"})
        assert forged.status_code == 401, route.rule
        checked += 1
    assert checked == sum(1 for r in ROUTES if r.policy == "dac") > 15


@pytest.mark.parametrize(
    "name",
    [
        "iss",
        "source",
        "by",
        "asserted",
        "exp",
        "sub",
        "conditions",
        "dac",
        "granted_by",
        "granted_at",
        "id",
        "revoked_at",
    ],
)
def test_ga13_security_fields_in_the_body_are_refused(
    client: FlaskClient, ring: KeyRing, settings: SettingsWithDac, store: Store, name: str
) -> None:
    body = {"identity": "researcher", "dataset": "EGAD-A1", "end": later(5), name: "x"}
    response = client.post("/api/dac/grants", json=body, headers=auth(ring, settings, "member-a"))
    assert response.status_code == 400 and response.get_json()["fields"] == {name: "not accepted here"}
    assert DacRepository(kernel_of(store)).grants_of("researcher") == []


def test_ga13_issued_visa_derives_every_field(
    client: FlaskClient, app: Flask, ring: KeyRing, settings: SettingsWithDac
) -> None:
    made = client.post(
        "/api/dac/grants",
        json={"identity": "researcher", "dataset": "A-9", "end": later(3)},
        headers=auth(ring, settings, "chair-a"),
    ).get_json()
    assert made["granted_by"] == "chair-a" and made["dac"] == "A"
    (visa,) = container_of(app).dac_web.visas_for("researcher")
    claims = jwt.decode(visa, options={"verify_signature": False})
    assert claims["sub"] == "researcher" and claims["iss"] == settings.issuer
    assert claims["ga4gh_visa_v1"] == {
        "type": CONTROLLED_ACCESS_GRANTS,
        "asserted": made["granted_at"],
        "value": "https://broker.example/datasets/A-9",
        "source": "https://dac.example/dacs/A",
        "by": "dac",
    }


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"data": "identity=researcher", "content_type": "application/x-www-form-urlencoded"}, 415),
        ({"data": '{"identity": "researcher", "dataset": "A-1", "end": 1}', "content_type": "text/plain"}, 415),
        (
            {
                "data": '{"identity": "r", "identity": "s", "dataset": "A-1", "end": 1}',
                "content_type": "application/json",
            },
            400,
        ),
        ({"data": "[1, 2]", "content_type": "application/json"}, 400),
        ({"data": '{"identity": 5, "dataset": "A-1", "end": 99999999999}', "content_type": "application/json"}, 400),
        ({"json": {"identity": "researcher", "dataset": "A-1/" + "x" * 300, "end": 99999999999}}, 400),
    ],
)
def test_ui01_ui12_input_is_json_strict_and_validated(
    client: FlaskClient, ring: KeyRing, settings: SettingsWithDac, store: Store, kwargs: dict[str, Any], status: int
) -> None:
    response = client.post("/api/dac/grants", headers=auth(ring, settings, "member-a"), **kwargs)
    assert response.status_code == status and "error" in response.get_json()
    assert DacRepository(kernel_of(store)).grants_of("researcher") == []


def test_researcher_routes(
    client: FlaskClient, ring: KeyRing, settings: SettingsWithDac, prepared: dict[str, Any]
) -> None:
    me = auth(ring, settings, "researcher")
    assert client.get("/api/dac/me", headers=me).get_json() == {
        "identity": "researcher",
        "admin": False,
        "committees": {},
    }
    assert client.get("/api/dac/committees", headers=me).get_json() == []
    assert {g["id"] for g in client.get("/api/dac/my/grants", headers=me).get_json()} == {prepared["a"], prepared["b"]}
    accepted = client.post("/api/dac/registered/accept", json={}, headers=me)
    assert accepted.status_code == 201 and accepted.get_json()["by"] == "self"
    assert client.post("/api/dac/registered/vouch", json={"identity": "researcher-2"}, headers=me).status_code == 403
    status = client.post(
        "/api/dac/registered/status",
        json={"identity": "researcher", "dac": "B"},
        headers=auth(ring, settings, "member-b"),
    )
    assert status.status_code == 201 and status.get_json()["dac"] == "B"
    vouched = client.post("/api/dac/registered/vouch", json={"identity": "researcher-2"}, headers=me)
    assert vouched.status_code == 201 and vouched.get_json()["by"] == "peer"
    assert [r["type"] for r in client.get("/api/dac/registered", headers=me).get_json()] == [
        "AcceptedTermsAndPolicies",
        "ResearcherStatus",
    ]
    assert client.get("/api/dac/registered?identity=researcher-2", headers=me).status_code == 403
    revoked = client.post(f"/api/dac/registered/{vouched.get_json()['id']}/revoke", json={"reason": "oops"}, headers=me)
    assert revoked.status_code == 200 and revoked.get_json()["live"] is False


def test_revocation_calls_hook_and_permissions_api_drops_the_visa(
    client: FlaskClient,
    ring: KeyRing,
    settings: SettingsWithDac,
    store: Store,
    prepared: dict[str, Any],
    hooked: list[str],
) -> None:
    store.put_client(
        Client(
            client_id="peer-broker",
            name="Peer",
            scopes=("ga4gh_permissions",),
            secret_hash=hash_secret(SECRET),
            grant_types=("client_credentials",),
        )
    )
    basic = {"Authorization": "Basic " + base64.b64encode(f"peer-broker:{SECRET}".encode()).decode()}
    before = client.get("/api/permissions/researcher", headers=basic)
    assert before.status_code == 200 and before.headers["Cache-Control"] == "no-store"
    assert len(before.get_json()["ga4gh_passport_v1"]) == 2
    revoke = client.post(
        f"/api/dac/grants/{prepared['a']}/revoke", json={"reason": "misuse"}, headers=auth(ring, settings, "member-a")
    )
    assert revoke.status_code == 200 and hooked == [prepared["a"]]
    after = client.get("/api/permissions/researcher", headers=basic).get_json()["ga4gh_passport_v1"]
    assert len(after) == 1


def test_permissions_api_needs_an_authenticated_client_with_the_scope(
    client: FlaskClient, ring: KeyRing, settings: SettingsWithDac, store: Store
) -> None:
    store.put_client(Client(client_id="portal", name="Portal", scopes=("openid",), secret_hash=hash_secret(SECRET)))
    store.put_client(
        Client(client_id="peer", name="Peer", scopes=("ga4gh_permissions",), secret_hash=hash_secret(SECRET))
    )

    def basic(cid: str, secret: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()}

    assert client.get("/api/permissions/researcher").status_code == 401
    assert client.get("/api/permissions/researcher", headers=basic("peer", "wrong")).status_code == 401
    assert client.get("/api/permissions/researcher", headers=basic("portal", SECRET)).status_code == 403
    user_token = auth(ring, settings, "admin")  # a user's bearer token is not a client credential
    assert client.get("/api/permissions/researcher", headers=user_token).status_code == 401
    ok = client.get("/api/permissions/nobody", headers=basic("peer", SECRET))
    assert ok.status_code == 200 and ok.get_json() == {"ga4gh_passport_v1": []}


def test_openapi_document_matches_the_url_map_and_is_valid(client: FlaskClient, app: Flask) -> None:
    document = client.get("/api/openapi.json").get_json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    served = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/api/dac", "/api/permissions", "/api/openapi"))
        for method in rule.methods - {"HEAD", "OPTIONS"}  # type: ignore[operator]
    }
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served == documented and len(served) == len(ROUTES)


def test_errors_are_json_with_codes(client: FlaskClient, ring: KeyRing, settings: SettingsWithDac) -> None:
    member = auth(ring, settings, "member-a")
    missing = client.get("/api/dac/grants/nope", headers=member)
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"
    bad = client.post("/api/dac/grants", json={"identity": "researcher"}, headers=member)
    assert bad.status_code == 400 and bad.get_json()["fields"] == {"dataset": "required", "end": "required"}
    query = client.get("/api/dac/grants?live=maybe", headers=member)
    assert query.status_code == 400 and "live" in query.get_json()["fields"]


def test_ui14_a_revoked_status_stays_out_of_the_permissions_api_and_the_passport_after_a_re_vouch(
    client: FlaskClient, app: Flask, ring: KeyRing, settings: SettingsWithDac, store: Store
) -> None:
    store.put_client(
        Client(client_id="peer", name="Peer", scopes=("ga4gh_permissions",), secret_hash=hash_secret(SECRET))
    )
    basic = {"Authorization": "Basic " + base64.b64encode(f"peer:{SECRET}".encode()).decode()}

    def permissions() -> list[dict[str, Any]]:
        tokens = client.get("/api/permissions/researcher-2", headers=basic).get_json()["ga4gh_passport_v1"]
        return [jwt.decode(t, options={"verify_signature": False}) for t in tokens]

    def post(who: str, path: str, body: dict[str, Any]) -> Any:
        return client.post(f"/api/dac/registered{path}", json=body, headers=auth(ring, settings, who))

    for who in ("researcher", "member-a"):  # both may vouch: ResearcherStatus from DAC B
        assert post("member-b", "/status", {"identity": who, "dac": "B"}).status_code == 201
    first = post("researcher", "/vouch", {"identity": "researcher-2"}).get_json()
    (visa,) = permissions()
    assert visa["ga4gh_visa_v1"]["by"] == "peer" and record_of_jti(visa["jti"]) == first["id"]

    assert post("admin", f"/{first['id']}/revoke", {"reason": "not a researcher"}).status_code == 200
    assert post("chair-a", "/vouch", {"identity": "researcher-2"}).status_code == 403  # no status: not entitled
    assert permissions() == []
    assert container_of(app).visas_for("researcher-2") == []
    assert revocation_check(store)(visa["jti"]) is True

    second = post("member-a", "/vouch", {"identity": "researcher-2"})
    assert second.status_code == 201 and second.get_json()["id"] != first["id"]
    (again,) = permissions()
    assert record_of_jti(again["jti"]) == second.get_json()["id"]
    assert revocation_check(store)(visa["jti"]) is True, "the revoked record's visas stay refused"
    listed = client.get("/api/dac/registered?identity=researcher-2", headers=auth(ring, settings, "admin")).get_json()
    assert {(r["id"], r["revoked_by"], r["live"]) for r in listed} == {
        (first["id"], "admin", False),
        (second.get_json()["id"], None, True),
    }


def test_permissions_api_limits_failed_client_authentication_per_address_and_requests_per_client(
    app: Flask, store: Store
) -> None:
    """Issue 11 item 2: /api/permissions had no limit; a fresh client_id per request must not escape one."""
    store.put_client(
        Client(client_id="peer", name="Peer", scopes=("ga4gh_permissions",), secret_hash=hash_secret(SECRET))
    )

    def basic(cid: str, secret: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()}

    def wait_for_a_fresh_window(limit: Limit, needed: float) -> None:
        remaining = limit.window - time.time() % limit.window
        if remaining < needed:
            time.sleep(remaining + 0.05)

    guesser = app.test_client()
    guesser.environ_base["REMOTE_ADDR"] = "192.0.2.10"
    wait_for_a_fresh_window(CLIENT_AUTH_FAILURES_PER_ADDRESS, 20)
    for i in range(CLIENT_AUTH_FAILURES_PER_ADDRESS.count):
        miss = guesser.get("/api/permissions/researcher", headers=basic(f"made-up-{i}", "guess"))
        assert miss.status_code == 401, i
    blocked = guesser.get("/api/permissions/researcher", headers=basic("peer", SECRET))
    assert blocked.status_code == 429 and blocked.get_json()["error"] == "too_many_requests"
    assert 1 <= int(blocked.headers["Retry-After"]) <= CLIENT_AUTH_FAILURES_PER_ADDRESS.window
    caller = app.test_client()
    caller.environ_base["REMOTE_ADDR"] = "192.0.2.20"
    wait_for_a_fresh_window(PERMISSIONS_REQUESTS, 30)
    for i in range(PERMISSIONS_REQUESTS.count):
        assert caller.get("/api/permissions/nobody", headers=basic("peer", SECRET)).status_code == 200, i
    over = caller.get("/api/permissions/nobody", headers=basic("peer", SECRET))
    assert over.status_code == 429 and over.get_json()["error"] == "too_many_requests" and over.headers["Retry-After"]
