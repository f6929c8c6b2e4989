"""The applications API (``/api/dac/applications...``) with real access tokens signed by our key ring.

Role matrix for every action: applicant (``researcher``), co-applicant (``researcher-2``, named by
e-mail), member and chair of DAC A, site admin, a member of another DAC (``member-b``) and
anonymous. A refused action answers 401 (anonymous) or 403 ``forbidden`` and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from broker.app import create_app
from broker.container import Container
from broker.dac.repository import DacRepository
from broker.keys.ring import KeyRing
from broker.oidc.tokens import mint_access_token
from tests.dac.conftest import DAY, ISSUER, SettingsWithDac, dac_config, kernel_of
from tests.support.keys import open_ring
from tests.support.legacy_store import Store

ROLES = (None, "researcher", "researcher-2", "member-a", "chair-a", "admin", "member-b")
ANSWERS = {
    "title": "Kidney variants",
    "purpose_codes": ["DUO:0000007"],
    "purpose_text": "Association study.",
    "institution": "Example University",
    "co_applicants": ["researcher-2@example.org"],
}


@pytest.fixture
def settings(tmp_path: Path) -> SettingsWithDac:
    return SettingsWithDac(issuer=ISSUER, data_dir=str(tmp_path / "data"), dac=dac_config())


@pytest.fixture
def ring(settings: SettingsWithDac, store: Store) -> KeyRing:
    ring = open_ring(settings, store, auto_maintain_seconds=None)
    ring.maintain()
    return ring


@pytest.fixture
def app(settings: SettingsWithDac, store: Store, ring: KeyRing) -> Flask:
    return create_app(Container.build(settings, kernel=store.kernel))


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


def auth(ring: KeyRing, settings: SettingsWithDac, who: str | None) -> dict[str, str]:
    if who is None:
        return {}
    jwt, _ = mint_access_token(
        ring, settings, sub=who, client_id="dac-portal", scope=("openid", "dac"), grant=f"g-{who}", now=int(time.time())
    )
    return {"Authorization": f"Bearer {jwt}"}


def later(days: int) -> int:
    return int(time.time()) + days * DAY


class Api:
    def __init__(self, client: FlaskClient, ring: KeyRing, settings: SettingsWithDac) -> None:
        self.client, self.ring, self.settings = client, ring, settings

    def call(self, who: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        return self.client.open(path, method=method, headers=auth(self.ring, self.settings, who), **kwargs)

    def made(self, state: str) -> str:
        """An application of ``researcher`` on EGAD-A1 in ``state`` (draft, submitted or approved)."""
        created = self.call("researcher", "POST", "/api/dac/applications", {"datasets": ["EGAD-A1"], **ANSWERS})
        assert created.status_code == 201, created.get_json()
        app_id: str = created.get_json()["id"]
        if state in ("submitted", "approved"):
            assert self.call("researcher", "POST", f"/api/dac/applications/{app_id}/submit", {}).status_code == 200
        if state == "approved":
            ok = self.call("chair-a", "POST", f"/api/dac/applications/{app_id}/approve", {"end": later(30)})
            assert ok.status_code == 200 and ok.get_json()["state"] == "approved"
        return app_id


@pytest.fixture
def api(client: FlaskClient, ring: KeyRing, settings: SettingsWithDac) -> Api:
    return Api(client, ring, settings)


HANDLERS = {"member-a", "chair-a", "admin"}
APPLICANT_SIDE = {"researcher", "researcher-2"}
SIGNED_IN = {r for r in ROLES if r is not None}
#: action -> (state the application is in, method, path suffix, body, who may)
ACTIONS: dict[str, tuple[str, str, str, dict[str, Any] | None, set[str]]] = {
    "show": ("submitted", "GET", "", None, APPLICANT_SIDE | HANDLERS),
    "update": ("draft", "PATCH", "", {"title": "New title"}, {"researcher"}),
    "submit": ("draft", "POST", "/submit", {}, {"researcher"}),
    "withdraw": ("submitted", "POST", "/withdraw", {"reason": "done"}, {"researcher"}),
    "comment": ("submitted", "POST", "/comments", {"text": "a question"}, APPLICANT_SIDE | HANDLERS),
    "approve": ("submitted", "POST", "/approve", {"end": later(20)}, HANDLERS),
    "reject": ("submitted", "POST", "/reject", {"reason": "out of scope"}, HANDLERS),
    "return": ("submitted", "POST", "/return", {"reason": "say more"}, HANDLERS),
    "revoke": ("approved", "POST", "/revoke", {"reason": "misuse"}, HANDLERS),
}


def _snapshot(store: Store, app_id: str) -> tuple[object, ...]:
    repo = DacRepository(kernel_of(store))
    return (repo.application(app_id), tuple(repo.comments_on(app_id)), tuple(repo.grants_of("researcher")))


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("who", ROLES, ids=[str(r) for r in ROLES])
def test_ga12_applications_role_matrix(api: Api, store: Store, who: str | None, action: str) -> None:
    state, method, suffix, body, allowed = ACTIONS[action]
    app_id = api.made(state)
    before = _snapshot(store, app_id)
    response = api.call(who, method, f"/api/dac/applications/{app_id}{suffix}", body)
    if who in allowed:
        assert response.status_code in (200, 201), response.get_json()
        assert _snapshot(store, app_id) != before or action == "show"
    else:
        assert response.status_code == (401 if who is None else 403), response.get_json()
        assert response.get_json()["error"] == ("invalid_token" if who is None else "forbidden")
        assert _snapshot(store, app_id) == before


@pytest.mark.parametrize("who", ROLES, ids=[str(r) for r in ROLES])
def test_ga12_listing_and_starting_applications_by_role(api: Api, who: str | None) -> None:
    app_id = api.made("submitted")
    listed = api.call(who, "GET", "/api/dac/applications?dac=A")
    if who in HANDLERS:
        assert [a["id"] for a in listed.get_json()] == [app_id]
    else:
        assert listed.status_code == (401 if who is None else 403)
    mine = api.call(who, "GET", "/api/dac/my/applications")
    if who is None:
        assert mine.status_code == 401
    else:
        assert [a["id"] for a in mine.get_json()] == ([app_id] if who in APPLICANT_SIDE else [])
    started = api.call(who, "POST", "/api/dac/applications", {"datasets": ["EGAD-B1"], "title": "mine"})
    assert started.status_code == (401 if who is None else 201)
    if who is not None:
        assert started.get_json()["applicant"] == who and started.get_json()["state"] == "draft"


def test_the_whole_flow_through_the_api_with_names_and_the_grant_ending_as_decided(api: Api) -> None:
    form = api.call("researcher", "GET", "/api/dac/applications/form?datasets=EGAD-A1").get_json()
    assert form["dac"] == "A" and form["required_approvals"] == 1 and "DUO:0000007" in form["purpose_codes"]
    created = api.call(
        "researcher", "POST", "/api/dac/applications", {"datasets": ["EGAD-A1"], "submit": True, **ANSWERS}
    ).get_json()
    assert created["state"] == "submitted" and created["applicant_name"] == "Researcher"
    api.call("member-a", "POST", f"/api/dac/applications/{created['id']}/comments", {"text": "Which cohort?"})
    end = later(90)
    approved = api.call("member-a", "POST", f"/api/dac/applications/{created['id']}/approve", {"end": end}).get_json()
    assert approved["state"] == "approved" and approved["approver_names"] == ["Member-A"]
    shown = api.call("researcher", "GET", f"/api/dac/applications/{created['id']}").get_json()
    assert [(c["author_name"], c["text"], c["side"]) for c in shown["comments"]] == [
        ("Member-A", "Which cohort?", "dac")
    ]
    (grant,) = api.call("researcher", "GET", "/api/dac/my/grants").get_json()
    assert grant["end"] == end and grant["application"] == created["id"] and grant["purpose_codes"] == ["DUO:0000007"]
    closed = api.call(
        "chair-a", "POST", f"/api/dac/applications/{created['id']}/revoke", {"reason": "Shared outside the project"}
    ).get_json()
    assert closed["state"] == "closed"
    (grant,) = api.call("researcher", "GET", "/api/dac/my/grants").get_json()
    assert grant["live"] is False and grant["revoke_reason"] == "Shared outside the project"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"datasets": "EGAD-A1"}, {"datasets"}),
        ({"datasets": []}, {"datasets"}),
        ({"datasets": ["EGAD-A1"], "purpose_codes": ["GRU"]}, {"purpose_codes"}),
        ({"datasets": ["EGAD-A1"], "co_applicants": ["nobody"]}, {"co_applicants"}),
        ({"datasets": ["EGAD-A1"], "title": 5}, {"title"}),
        ({"datasets": ["EGAD-A1"], "state": "approved"}, {"state"}),
        ({"datasets": ["EGAD-A1"], "applicant": "admin"}, {"applicant"}),
        ({"datasets": ["EGAD-A1"], "submit": True}, {"title", "purpose_codes", "purpose_text", "institution"}),
    ],
)
def test_ui12_bad_application_input_is_a_400_naming_the_fields(
    api: Api, store: Store, body: dict[str, Any], fields: set[str]
) -> None:
    response = api.call("researcher", "POST", "/api/dac/applications", body)
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()["fields"]) == fields
    if body.get("submit"):  # the draft was made, the submission refused: nothing reached the DAC
        assert [a.state for a in DacRepository(kernel_of(store)).applications_of("researcher")] == ["draft"]
    else:
        assert DacRepository(kernel_of(store)).applications_of("researcher") == []


def test_wrong_state_is_a_409_and_unknown_ids_a_404(api: Api) -> None:
    app_id = api.made("approved")
    again = api.call("member-a", "POST", f"/api/dac/applications/{app_id}/reject", {"reason": "no"})
    assert again.status_code == 409 and again.get_json()["error"] == "conflict"
    assert api.call("member-a", "GET", "/api/dac/applications/app-nope").status_code == 404
    assert api.call("member-a", "GET", "/api/dac/applications?state=bogus").status_code == 400
    assert api.call("researcher", "GET", "/api/dac/applications/form").status_code == 400


@pytest.mark.parametrize("who", ROLES, ids=[str(r) for r in ROLES])
def test_people_are_found_by_name_or_e_mail_by_dac_members_and_admins_only(api: Api, who: str | None) -> None:
    found = api.call(who, "GET", "/api/dac/people?q=researcher-2@example")
    if who in HANDLERS or who == "member-b":
        assert found.status_code == 200
        assert found.get_json() == [{"id": "researcher-2", "name": "Researcher-2", "email": "researcher-2@example.org"}]
    else:
        assert found.status_code == (401 if who is None else 403)
    if who == "admin":
        assert api.call(who, "GET", "/api/dac/people?q=x").status_code == 400
