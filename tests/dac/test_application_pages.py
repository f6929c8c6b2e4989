"""The application pages through the Flask test client: the form keeps input and shows errors beside
fields, the DAC pages show names (ids on hover), the whole flow works without JavaScript, and the
pages run under a CSP with no inline styles."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from broker.dac.settings import DatasetTermsSettings
from tests.dac.web import Site, csrf_of, login, make_site

END = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 200 * 86400))
TERMS = DatasetTermsSettings(datasets=["EGAD-A1", "A-*"], version="v3", text="Cite the consortium.")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = make_site(tmp_path_factory.mktemp("app-pages") / "data", required_approvals=2, terms=[TERMS])
    yield site
    site.store.close()


def client_for(site: Site, name: str) -> FlaskClient:
    client = site.app.test_client()
    login(client, name)
    return client


FULL = {
    "title": "Kidney variants",
    "purpose_codes": "DUO:0000007",
    "purpose_text": "Association study.",
    "institution": "Example University",
    "co_applicants": "",
    "accepted_terms": "EGAD-A1@v3",
}


def apply(site: Site, client: FlaskClient, form: dict[str, str], dataset: str = "EGAD-A1") -> object:
    page = client.get(f"/account/apply?datasets={dataset}").get_data(as_text=True)
    return client.post(
        "/account/apply", data={**form, "datasets": dataset, "csrf_token": csrf_of(page), "action": "submit"}
    )


def test_the_form_keeps_what_was_typed_and_shows_each_error_beside_its_field(site: Site) -> None:
    researcher = client_for(site, "researcher")
    form = researcher.get("/account/apply?datasets=EGAD-A1").get_data(as_text=True)
    assert "Cite the consortium." in form and 'value="EGAD-A1@v3"' in form and "2 committee members" in form
    response = apply(site, researcher, {"title": "My <b>study</b>", "institution": "", "co_applicants": "nope"})
    assert response.status_code == 400  # type: ignore[attr-defined]
    html = response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert 'value="My &lt;b&gt;study&lt;/b&gt;"' in html  # kept, and escaped
    for field, error_id in (
        ("institution", "institution-error"),
        ("co_applicants", "co-error"),
        ("accepted_terms", "terms-error"),
        ("purpose_codes", "purpose-error"),
    ):
        assert f'id="{error_id}"' in html, field
    assert 'aria-invalid="true" aria-describedby="institution-error"' in html
    assert site.repository.applications_of(site.ids["researcher"]) == []  # nothing was written


def test_apply_comment_approve_twice_and_revoke_through_the_pages(site: Site) -> None:
    researcher = client_for(site, "researcher")
    done = apply(site, researcher, FULL)
    assert done.status_code == 303  # type: ignore[attr-defined]
    app_path = done.headers["Location"]  # type: ignore[attr-defined]
    app_id = app_path.rsplit("/", 1)[-1]
    assert "submitted" in researcher.get(app_path).get_data(as_text=True)

    member = client_for(site, "member-a")
    queue = member.get("/dac/applications?state=submitted").get_data(as_text=True)
    assert f'title="{site.ids["researcher"]}">Researcher</span>' in queue  # the name, the id on hover
    page = member.get(f"/dac/applications/{app_id}").get_data(as_text=True)
    tokens = dict(
        re.findall(r'action="[^"]*/(comment|approve|return|reject)"[^>]*>\s*<input[^>]*value="([^"]+)"', page)
    )
    member.post(f"/dac/applications/{app_id}/comment", data={"csrf_token": tokens["comment"], "text": "Which cohort?"})
    first = member.post(f"/dac/applications/{app_id}/approve", data={"csrf_token": tokens["approve"], "end": END})
    assert first.status_code == 303
    assert "1 of 2" in member.get(f"/dac/applications/{app_id}").get_data(as_text=True)

    other = client_for(site, "member-a2")
    page = other.get(f"/dac/applications/{app_id}").get_data(as_text=True)
    token = dict(re.findall(r'action="[^"]*/(approve)"[^>]*>\s*<input[^>]*value="([^"]+)"', page))["approve"]
    assert other.post(f"/dac/applications/{app_id}/approve", data={"csrf_token": token, "end": END}).status_code == 303
    mine = researcher.get(app_path).get_data(as_text=True)
    assert 'id="app-state">approved' in mine and "Which cohort?" in mine and "state-live" in mine

    chair = client_for(site, "chair-a")
    page = chair.get(f"/dac/applications/{app_id}").get_data(as_text=True)
    token = dict(re.findall(r'action="[^"]*/(revoke)"[^>]*>\s*<input[^>]*value="([^"]+)"', page))["revoke"]
    chair.post(f"/dac/applications/{app_id}/revoke", data={"csrf_token": token, "reason": "Shared outside the project"})
    mine = researcher.get(app_path).get_data(as_text=True)
    assert 'id="closed-reason">Your access was revoked: Shared outside the project' in mine
    dataset = chair.get("/dac/datasets/EGAD-A1?show=all").get_data(as_text=True)
    assert "Kidney variants" in dataset and "Access history" in dataset and "applications.approve" in dataset


def test_an_applicant_on_the_dac_cannot_decide_their_own_application_on_the_page(site: Site) -> None:
    member = client_for(site, "member-a")
    done = apply(site, member, FULL)
    app_id = done.headers["Location"].rsplit("/", 1)[-1]  # type: ignore[attr-defined]
    page = member.get(f"/dac/applications/{app_id}").get_data(as_text=True)
    assert "other members decide it" in page and "/approve" not in page


def test_access_history_is_paginated_and_filtered(site: Site) -> None:
    chair = client_for(site, "chair-a")
    first = chair.get("/dac/datasets/EGAD-A1?outcome=decision").get_data(as_text=True)
    assert "Page 1 of" in first
    none = chair.get("/dac/datasets/EGAD-A1?holder=nobody-at-all").get_data(as_text=True)
    assert 'id="no-history"' in none and "matches these filters" in none
    assert chair.get("/dac/datasets/EGAD-A1?outcome=bogus").status_code == 400
    assert chair.get("/dac/datasets/EGAD-A1?from=yesterday").status_code == 400


def test_pages_use_one_stylesheet_and_the_csp_allows_no_inline_style(site: Site) -> None:
    researcher = client_for(site, "researcher")
    response = researcher.get("/account/datasets")
    csp = response.headers["Content-Security-Policy"]
    assert "style-src 'self'" in csp and "unsafe-inline" not in csp
    html = response.get_data(as_text=True)
    assert "<style" not in html and "style=" not in html and "/static/broker.css" in html
    assert "Apply for EGAD-A1" in html
    sheet = researcher.get("/static/broker.css")
    assert sheet.status_code == 200 and sheet.mimetype == "text/css"
