"""The DAC and researcher web pages through the Flask test client (UI-01, UI-02, UI-04, UI-08)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from broker.core.models import CONTROLLED_ACCESS_GRANTS
from tests.dac.web import Site, csrf_of, login, make_site

XSS = '"><script>alert(1)</script>{{7*7}}'


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = make_site(tmp_path_factory.mktemp("pages") / "data")
    yield site
    site.store.close()


def client_for(site: Site, name: str | None) -> FlaskClient:
    client = site.app.test_client()
    if name is not None:
        login(client, name)
    return client


def _end(days: int = 60) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() + days * 86400))


def _grant(site: Site, client: FlaskClient, dataset: str, who: str, reason: str = "study") -> None:
    page = client.get(f"/dac/datasets/{dataset}").get_data(as_text=True)
    token = csrf_of(page, -1)  # the grant form is the last form
    response = client.post(
        f"/dac/datasets/{dataset}/grants",
        data={"csrf_token": token, "identity": site.ids[who], "end": _end(), "reason": reason},
    )
    assert response.status_code == 303, response.get_data(as_text=True)


def test_ui08_anonymous_is_sent_to_login_and_researcher_is_refused(site: Site) -> None:
    anonymous = client_for(site, None)
    for path in ("/dac", "/dac/datasets/EGAD-A1", "/account/visas"):
        response = anonymous.get(path)
        assert response.status_code == 303 and response.headers["Location"].startswith("/login?next=")
    researcher = client_for(site, "researcher")
    assert researcher.get("/dac").status_code == 403
    assert researcher.get("/dac/datasets/EGAD-A1").status_code == 403
    member_b = client_for(site, "member-b")
    assert member_b.get("/dac/datasets/EGAD-A1").status_code == 403
    home = member_b.get("/dac").get_data(as_text=True)
    assert "DAC B" in home and "DAC A" not in home


def test_ui04_pages_carry_the_strict_headers(site: Site) -> None:
    response = client_for(site, "chair-a").get("/dac")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Frame-Options"] == "DENY"


def test_ui01_forms_need_their_csrf_token_and_our_origin(site: Site) -> None:
    member = client_for(site, "chair-a")
    page = member.get("/dac/datasets/A-csrf").get_data(as_text=True)
    token = csrf_of(page, -1)
    form = {"identity": site.ids["researcher"], "end": _end(), "reason": "x"}
    refusals = [
        ({}, {}),  # no token
        ({"csrf_token": "forged"}, {}),
        ({"csrf_token": token}, {"Origin": "https://evil.example"}),
        ({"csrf_token": token}, {"Origin": "null"}),
        ({"csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}),
        ({"csrf_token": token}, {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:8080"}),
    ]
    for extra, headers in refusals:
        response = member.post("/dac/datasets/A-csrf/grants", data={**form, **extra}, headers=headers)
        assert response.status_code == 403
    other = member.post("/dac/datasets/A-other/grants", data={**form, "csrf_token": token})  # token of another form
    assert other.status_code == 403
    assert site.repository.grants_for_dataset("A-csrf") == [] and site.repository.grants_for_dataset("A-other") == []
    ok = member.post(
        "/dac/datasets/A-csrf/grants",
        data={**form, "csrf_token": token},
        headers={"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 303 and len(site.repository.grants_for_dataset("A-csrf")) == 1


def test_ui02_untrusted_text_is_escaped(site: Site) -> None:
    member = client_for(site, "chair-a")
    _grant(site, member, "A-xss", "researcher", reason=XSS)
    page = member.get("/dac/datasets/A-xss").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;{{7*7}}" in page  # escaped, and no template evaluation


def test_grant_renew_revoke_through_the_pages_and_the_researcher_sees_it(site: Site) -> None:
    member = client_for(site, "chair-a")
    researcher = client_for(site, "researcher")
    _grant(site, member, "A-flow", "researcher")
    (grant,) = site.repository.grants_for_dataset("A-flow")
    page = member.get("/dac/datasets/A-flow").get_data(as_text=True)
    assert f'id="grant-{grant.id}"' in page and site.ids["researcher"] in page
    visas = researcher.get("/account/visas").get_data(as_text=True)
    assert CONTROLLED_ACCESS_GRANTS in visas and "https://broker.example/datasets/A-flow" not in visas
    assert "http://127.0.0.1:8080/datasets/A-flow" in visas and "Raw JWT" in visas
    tokens = {"revoke": csrf_of(page, 0), "renew": csrf_of(page, 1)}
    # A later end: a renewal to the end the grant already has, by the same member, is a retry and writes nothing.
    renewed = member.post(f"/dac/grants/{grant.id}/renew", data={"csrf_token": tokens["renew"], "end": _end(90)})
    assert renewed.status_code == 303
    no_reason = member.post(f"/dac/grants/{grant.id}/revoke", data={"csrf_token": tokens["revoke"], "reason": ""})
    assert no_reason.status_code == 400 and site.repository.grant(grant.id).revoked_at is None  # type: ignore
    revoked = member.post(f"/dac/grants/{grant.id}/revoke", data={"csrf_token": tokens["revoke"], "reason": "done"})
    assert revoked.status_code == 303
    after = researcher.get("/account/visas").get_data(as_text=True)
    assert "http://127.0.0.1:8080/datasets/A-flow" not in after  # the visa is gone
    assert 'Reason: <span class="revoke-reason">done</span>' in after  # and the researcher sees why
    trail = member.get("/dac/datasets/A-flow").get_data(as_text=True)
    assert "grants.revoke" in trail and "grants.renew" in trail and "grants.create" in trail


def test_researcher_accepts_the_registered_access_terms(site: Site) -> None:
    researcher = client_for(site, "researcher")
    page = researcher.get("/account/visas").get_data(as_text=True)
    assert "Accept the terms" in page
    response = researcher.post("/account/visas/accept-terms", data={"csrf_token": csrf_of(page, -1)})
    assert response.status_code == 303
    page = researcher.get("/account/visas").get_data(as_text=True)
    assert "AcceptedTermsAndPolicies" in page and "Accept the terms" not in page
