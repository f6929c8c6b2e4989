"""The whole flow with a real upstream IdP (oidc-provider): researcher -> broker -> IdP -> broker -> client."""

from __future__ import annotations

from urllib.parse import urljoin

from broker.core.models import AFFILIATION_AND_ROLE, CONTROLLED_ACCESS_GRANTS
from tests.login.browser import Browser, forms, origin, query_of
from tests.login.conftest import AFFILIATION_SOURCE
from tests.login.flows import clearinghouse, login_through, passport_of, start_authorization, userinfo
from tests.login.peers import NodeIdp, VisaIssuer
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, claims, header, redeem


def test_login_page_offers_every_connector_and_each_upstream_starts_its_own_flow(
    login_broker: BrokerProcess, app: Client, idp1: NodeIdp, idp2: NodeIdp
) -> None:
    browser = Browser()
    response, _ = start_authorization(browser, login_broker, app)
    page = browser.next(response)
    actions = [action for action, _ in forms(page.text)]
    assert "/login/local/local" in actions
    assert {"/login/upstream/idp1", "/login/upstream/idp2", "/login/upstream/fake"} <= set(actions)
    assert "University IdP" in page.text and "Institute IdP" in page.text
    for connector, idp in (("idp1", idp1), ("idp2", idp2)):
        sent = browser.submit(page, f"/login/upstream/{connector}")
        assert sent.status_code == 303
        location = sent.headers["Location"]
        assert location.startswith(idp.url("/auth?"))
        query = query_of(location)
        assert query["client_id"] == "broker-main" and query["response_type"] == "code"
        assert query["redirect_uri"] == login_broker.url(f"/login/callback/{connector}")
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32 and query["state"] != query["nonce"]


def test_whole_flow_passport_holds_minted_affiliation_and_relayed_visa(
    login_broker: BrokerProcess, app: Client, idp1: NodeIdp, visa_issuer: VisaIssuer, upstream_visas: dict[str, str]
) -> None:
    browser = Browser(
        connectors={origin(login_broker.issuer): "idp1"}, accounts={idp1.issuer: "alice-idp"}, consent=False
    )
    response, verifier = start_authorization(browser, login_broker, app, state="st-1")
    # Up to our consent page, through the real upstream IdP.
    consent = browser.drive(response, until=app.redirect_uri)
    assert consent.url.startswith(login_broker.url("/consent")), consent.text[:500]
    assert "faculty@uni.example" in consent.text and "EGAD0001" in consent.text
    assert "EGAD0002" not in consent.text and "staff@uni.example" not in consent.text
    final = browser.submit(consent, "/consent", decision="allow")
    query = query_of(urljoin(final.url, final.headers["Location"]))
    assert query["state"] == "st-1" and query["iss"] == login_broker.issuer
    tokens = redeem(login_broker, app, query["code"], verifier).json()

    info = userinfo(login_broker, tokens["access_token"])
    assert info["name"] == "Alice Upstream" and info["email"] == "alice@uni.example"
    visas = info["ga4gh_passport_v1"]
    assert upstream_visas["trusted"] in visas  # relayed byte for byte
    for refused in ("jku_not_allowed", "untrusted_issuer", "expired"):
        assert upstream_visas[refused] not in visas
    assert "not-a-visa" not in visas
    minted = [claims(v) for v in visas if claims(v)["iss"] == login_broker.issuer]
    affiliations = {m["ga4gh_visa_v1"]["value"] for m in minted if m["ga4gh_visa_v1"]["type"] == AFFILIATION_AND_ROLE}
    assert affiliations == {"faculty@uni.example", "member@uni.example"}
    for m in minted:
        assert m["sub"] == info["sub"] and m["ga4gh_visa_v1"]["by"] == "system"
        assert m["ga4gh_visa_v1"]["source"] == AFFILIATION_SOURCE
    assert len(visas) == 3

    passport = passport_of(login_broker, app, tokens["access_token"])
    assert header(passport)["typ"] == "vnd.ga4gh.passport+jwt"
    result = clearinghouse(login_broker, {visa_issuer.iss: visa_issuer.jku}).verify_passport(passport)
    assert result.ok, result.error
    assert result.rejected == ()
    kinds = sorted((v.iss, v.visa.type, v.visa.value) for v in result.accepted)
    assert kinds == sorted(
        [
            (login_broker.issuer, AFFILIATION_AND_ROLE, "faculty@uni.example"),
            (login_broker.issuer, AFFILIATION_AND_ROLE, "member@uni.example"),
            (visa_issuer.iss, CONTROLLED_ACCESS_GRANTS, "https://ega.example/datasets/EGAD0001"),
        ]
    )
    relayed = next(v for v in result.accepted if v.iss == visa_issuer.iss)
    assert relayed.raw == upstream_visas["trusted"]


def test_second_login_finds_the_same_account_by_iss_and_sub(
    login_broker: BrokerProcess, app: Client, idp1: NodeIdp
) -> None:
    _, first = login_through(login_broker, app, "idp1", idp1.issuer, "erin")
    _, second = login_through(login_broker, app, "idp1", idp1.issuer, "erin")
    assert claims(first["id_token"])["sub"] == claims(second["id_token"])["sub"]
