"""THREAT-MODEL section 4, the broker as relying party to upstream IdPs: RP-01..RP-10.

Real peers: oidc-provider (tests/peers/idp.mjs) where it can show the attack, the fake IdP
(tests/login/fake_idp.py) where the upstream itself must misbehave. An aborted login (EPM h)
always means: no logged-in session, and either an error page or the downstream client
redirected with ``error``, ``state`` and ``iss``.
"""

from __future__ import annotations

import html
import time
from urllib.parse import urlencode, urljoin

import pytest
import requests

from tests.login.browser import Browser, origin, query_of
from tests.login.conftest import RP05_TENANTS
from tests.login.fake_idp import FakeIdp
from tests.login.flows import login_through, start_authorization, userinfo
from tests.login.peers import NodeIdp
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, claims

ACCESS_DENIED_TEXT = "Login at the home organisation failed."


def logged_in(browser: Browser, broker: BrokerProcess) -> bool:
    """True when the browser's session is logged in (the account page shows instead of a redirect)."""
    return browser.get(broker.url("/account")).status_code == 200


def to_callback(browser: Browser, broker: BrokerProcess, connector: str) -> tuple[requests.Response, str]:
    """Start a login at ``connector`` from the plain login page; return the upstream's redirect to our callback."""
    page = browser.get(broker.url("/login"))
    response = browser.submit(page, f"/login/upstream/{connector}")
    state = query_of(response.headers["Location"])["state"]
    response = browser.drive(response, until=broker.url(f"/login/callback/{connector}"))
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return response, state


def callback_url(response: requests.Response) -> str:
    return urljoin(response.url, response.headers["Location"])


def client_error(
    browser: Browser, broker: BrokerProcess, app: Client, connector: str, state: str = "client-st"
) -> dict[str, str]:
    """A client's request whose login through ``connector`` fails: the error the client receives."""
    response, _ = start_authorization(browser, broker, app, state=state)
    page = browser.next(response)
    response = browser.drive(browser.submit(page, f"/login/upstream/{connector}"), until=app.redirect_uri)
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return query_of(callback_url(response))


# --------------------------------------------------------------------------- RP-01


def test_rp01_login_csrf_callback_in_another_browser_is_refused(login_broker: BrokerProcess, idp1: NodeIdp) -> None:
    attacker = Browser(connectors={origin(login_broker.issuer): "idp1"}, accounts={idp1.issuer: "rp01-attacker"})
    response, _ = to_callback(attacker, login_broker, "idp1")
    lure = callback_url(response)
    victim = Browser(accounts={idp1.issuer: "rp01-victim"})
    victim.submit(victim.get(login_broker.url("/login")), "/login/upstream/idp1")  # the victim's own pending login
    before = idp1.stats()["token"]
    refused = victim.get(lure)
    assert refused.status_code == 400
    assert not logged_in(victim, login_broker)
    assert Browser().get(lure).status_code == 400  # no session at all
    # The state was consumed by the first use: the attacker cannot complete it either.
    assert attacker.get(lure).status_code == 400 and not logged_in(attacker, login_broker)
    assert idp1.stats()["token"] == before  # the attacker's code was never redeemed
    # Control: the same login in the browser that started it succeeds, once.
    response, _ = to_callback(attacker, login_broker, "idp1")
    lure = callback_url(response)
    done = attacker.get(lure)
    assert done.status_code == 303 and done.headers["Location"].endswith("/account")
    assert logged_in(attacker, login_broker)
    assert attacker.get(lure).status_code == 400  # single use


# --------------------------------------------------------------------------- RP-02


def test_rp02_mix_up_response_of_another_idp_is_refused(
    login_broker: BrokerProcess, idp1: NodeIdp, idp2: NodeIdp
) -> None:
    browser = Browser(
        connectors={origin(login_broker.issuer): "idp1"}, accounts={idp1.issuer: "rp02-user", idp2.issuer: "rp02-user"}
    )
    from_b, state_b = to_callback(browser, login_broker, "idp2")
    code_b = query_of(callback_url(from_b))["code"]
    tokens_before = (idp1.stats()["token"], idp2.stats()["token"])
    cases = [
        ("idp1", {"iss": idp2.issuer}),  # B's response delivered with A's state: iss says B
        ("idp1", {}),  # the same with iss stripped (A advertises iss, so it is required)
        ("idp2", {"iss": idp2.issuer}),  # A's state at B's callback: the state belongs to another connector
    ]
    for connector, extra in cases:
        page = browser.get(login_broker.url("/login"))
        state_a = query_of(browser.submit(page, "/login/upstream/idp1").headers["Location"])["state"]
        query = urlencode({"code": code_b, "state": state_a, **extra})
        refused = browser.get(login_broker.url(f"/login/callback/{connector}?{query}"))
        assert refused.status_code == 400, (connector, extra, refused.text[:300])
        assert not logged_in(browser, login_broker)
    assert (idp1.stats()["token"], idp2.stats()["token"]) == tokens_before  # no code went to any token endpoint
    # Control: B's own response, with B's own state, was good all along.
    done = browser.get(callback_url(from_b))
    assert done.status_code == 303 and logged_in(browser, login_broker)
    assert state_b == query_of(callback_url(from_b))["state"]


# --------------------------------------------------------------------------- RP-03


RP03_CASES = {  # fake IdP mode -> the reason the broker logs (each must fail for its own reason)
    "wrong_iss": "id_token_wrong_iss",
    "wrong_aud": "id_token_bad_aud",
    "no_sub": "id_token_bad_sub",
    "no_iat": "id_token_bad_time",
    "alg_none": "id_token_jws_bad_alg",
    "hs256": "id_token_jws_bad_alg",
    "bad_sig_es256": "id_token_jws_bad_signature",
    "bad_sig_rs256": "id_token_jws_bad_signature",
    "kid_absent_multiple_keys": "id_token_key_kid_required",
    "wrong_nonce": "id_token_bad_nonce",
    "azp_mismatch": "id_token_bad_azp",
    "multi_aud_no_azp": "id_token_bad_azp",
    "expired": "id_token_expired",
    "iat_future": "id_token_bad_time",
    "typ_access_token": "id_token_bad_typ",
}


def last_abort(broker: BrokerProcess) -> str:
    """The reason of the broker's latest aborted upstream login, from its log."""
    lines = [line for line in broker.log_text().splitlines() if "upstream login via" in line and "aborted" in line]
    return lines[-1].split("aborted: ", 1)[1].split(" ", 1)[0] if lines else ""


@pytest.mark.parametrize("mode", sorted(RP03_CASES))
def test_rp03_bad_upstream_id_token_aborts_login(
    login_broker: BrokerProcess, app: Client, fake_idp: FakeIdp, mode: str
) -> None:
    fake_idp.tenants["main"].mode = mode
    browser = Browser()
    error = client_error(browser, login_broker, app, "fake")
    assert error == {
        "error": "access_denied",
        "error_description": ACCESS_DENIED_TEXT,
        "state": "client-st",
        "iss": login_broker.issuer,
    }
    assert last_abort(login_broker) == RP03_CASES[mode]
    assert not logged_in(browser, login_broker)


@pytest.mark.parametrize("mode", ["good", "good_rs256"])
def test_rp03_control_honest_fake_idp_logs_in(
    login_broker: BrokerProcess, app: Client, fake_idp: FakeIdp, mode: str
) -> None:
    fake_idp.tenants["main"].mode = mode
    _, tokens = login_through(login_broker, app, "fake", fake_idp.base, "-")
    info = userinfo(login_broker, tokens["access_token"])
    assert info["name"] == "Fake User"
    assert [claims(v)["ga4gh_visa_v1"]["value"] for v in info["ga4gh_passport_v1"]] == ["member@fake.example"]


# --------------------------------------------------------------------------- RP-04


@pytest.mark.parametrize("mode", ["userinfo_other_sub", "userinfo_no_sub"])
def test_rp04_userinfo_sub_mismatch_aborts_login(
    login_broker: BrokerProcess, app: Client, fake_idp: FakeIdp, mode: str
) -> None:
    fake_idp.tenants["main"].mode = mode
    browser = Browser()
    error = client_error(browser, login_broker, app, "fake")
    assert error["error"] == "access_denied" and error["state"] == "client-st"
    assert error["iss"] == login_broker.issuer
    assert last_abort(login_broker) == "userinfo_sub_mismatch"
    assert not logged_in(browser, login_broker)


# --------------------------------------------------------------------------- RP-05


@pytest.mark.parametrize("tenant", RP05_TENANTS)
def test_rp05_discovery_issuer_mismatch_or_substituted_endpoint_makes_idp_unusable(
    login_broker: BrokerProcess, app: Client, fake_idp: FakeIdp, tenant: str
) -> None:
    browser = Browser()
    response, _ = start_authorization(browser, login_broker, app)
    page = browser.next(response)
    refused = browser.submit(page, f"/login/upstream/{tenant}")
    assert refused.status_code == 503 and "Location" not in refused.headers
    assert "not available" in refused.text
    assert not logged_in(browser, login_broker)
    endpoints = {endpoint for (name, endpoint) in fake_idp.hits if name == tenant}
    assert endpoints <= {".well-known/openid-configuration"}  # nothing sent to a substituted endpoint
    # The client's request is still pending: another way to log in can still complete it.
    assert browser.get(page.url).status_code == 200


# --------------------------------------------------------------------------- RP-06


def test_rp06_upstream_key_rotation_one_jwks_refetch_then_success(
    login_broker: BrokerProcess, app: Client, idp2: NodeIdp
) -> None:
    login_through(login_broker, app, "idp2", idp2.issuer, "rot")  # the old key is cached now
    time.sleep(1.2)  # past trust.fetch.unknown_kid_cooldown_seconds (1 s in this broker)
    browser = Browser(accounts={idp2.issuer: "rot"})
    response, _ = to_callback(browser, login_broker, "idp2")  # authorization done with the old key in place
    fetched = idp2.stats()["jwks"]
    idp2.rotate()  # the token endpoint now signs with a key the broker has never seen
    done = browser.get(callback_url(response))
    assert done.status_code == 303 and done.headers["Location"].endswith("/account"), done.text[:500]
    assert idp2.stats()["jwks"] == fetched + 1


# --------------------------------------------------------------------------- RP-07


def test_rp07_hostile_upstream_claims_are_cleaned_and_escaped(
    login_broker: BrokerProcess, app: Client, idp1: NodeIdp
) -> None:
    browser, tokens = login_through(login_broker, app, "idp1", idp1.issuer, "xss")
    info = userinfo(login_broker, tokens["access_token"])
    assert info["name"] == "<img src=x onerror=alert(1)>evil Set-Cookie: x=1"  # no CR, LF or U+202E
    assert "email" not in info  # a CRLF-laden address is not kept
    page = browser.get(login_broker.url("/account")).text
    assert "<img src=x" not in page and html.escape("<img src=x onerror=alert(1)>", quote=False) in page
    assert "\u202e" not in page and "\r" not in page
    _, tokens = login_through(login_broker, app, "idp1", idp1.issuer, "big")
    assert userinfo(login_broker, tokens["access_token"])["name"] == "B" * 200


def test_rp07_megabyte_claim_is_refused_by_the_response_size_cap(
    login_broker: BrokerProcess, app: Client, idp1: NodeIdp
) -> None:
    browser = Browser(accounts={idp1.issuer: "huge"})
    error = client_error(browser, login_broker, app, "idp1")
    assert error["error"] == "temporarily_unavailable" and error["state"] == "client-st"
    assert not logged_in(browser, login_broker)


# --------------------------------------------------------------------------- RP-08


def test_rp08_unverified_upstream_email_is_never_kept(login_broker: BrokerProcess, app: Client, idp1: NodeIdp) -> None:
    """An address the upstream did not mark email_verified could name someone else: remote visa
    sources keyed on e-mail would then hand that person's visas to this account."""
    _, tokens = login_through(login_broker, app, "idp1", idp1.issuer, "dave")
    info = userinfo(login_broker, tokens["access_token"])
    assert info["name"] == "Dave"
    assert "email" not in info


def test_rp08_same_email_and_sub_at_two_idps_are_two_accounts(
    login_broker: BrokerProcess, app: Client, idp1: NodeIdp, idp2: NodeIdp
) -> None:
    browser1, tokens1 = login_through(login_broker, app, "idp1", idp1.issuer, "carol")
    browser2, tokens2 = login_through(login_broker, app, "idp2", idp2.issuer, "carol")
    info1, info2 = userinfo(login_broker, tokens1["access_token"]), userinfo(login_broker, tokens2["access_token"])
    assert info1["email"] == info2["email"] == "carol@shared.example"
    assert info1["sub"] != info2["sub"]
    for browser, idp in ((browser1, idp1), (browser2, idp2)):
        page = browser.get(login_broker.url("/account")).text
        assert page.count("<li><code>carol</code>") == 1 and html.escape(idp.issuer) in page
    for info in (info1, info2):  # one upstream identity each: no LinkedIdentities visa
        assert all(claims(v)["ga4gh_visa_v1"]["type"] != "LinkedIdentities" for v in info["ga4gh_passport_v1"])


# --------------------------------------------------------------------------- RP-09


EVIL = "<script>alert(1)</script>\r\nX-Injected: 1"


def test_rp09_upstream_error_reaches_client_as_access_denied_without_its_description(
    login_broker: BrokerProcess, app: Client, idp1: NodeIdp
) -> None:
    browser = Browser()
    response, _ = start_authorization(browser, login_broker, app, state="rp09")
    page = browser.next(response)
    at_idp = browser.drive(browser.submit(page, "/login/upstream/idp1"), until=app.redirect_uri)
    assert "/interaction/" in at_idp.url
    back = browser.post(at_idp.url + "/abort", {"error_description": EVIL})  # the upstream ends with an error
    to_us = browser.drive(back, until=login_broker.url("/login/callback/"))
    upstream = query_of(to_us.headers["Location"])
    assert upstream["error"] == "access_denied" and upstream["error_description"] == EVIL
    final = browser.drive(to_us, until=app.redirect_uri)
    assert query_of(callback_url(final)) == {
        "error": "access_denied",
        "error_description": ACCESS_DENIED_TEXT,
        "state": "rp09",
        "iss": login_broker.issuer,
    }
    assert not logged_in(browser, login_broker)


def test_rp09_upstream_error_without_a_client_shows_an_escaped_page(
    login_broker: BrokerProcess, fake_idp: FakeIdp
) -> None:
    fake_idp.tenants["main"].mode = "error_evil"
    browser = Browser()
    page = browser.get(login_broker.url("/login"))
    shown = browser.drive(browser.submit(page, "/login/upstream/fake"), until="https://nowhere.invalid/")
    assert shown.status_code == 400 and ACCESS_DENIED_TEXT in shown.text
    assert "<script>" not in shown.text and "alert(1)" not in shown.text and "X-Injected" not in shown.text
    assert "X-Injected" not in shown.headers and not logged_in(browser, login_broker)


# --------------------------------------------------------------------------- RP-10


RP10_CASES = {  # fake IdP token endpoint mode -> the reason the broker logs
    "html200": "token_bad_content_type",
    "status500": "token_bad_status",
    "drip": "token_timeout",
    "stall": "token_timeout",
    "huge": "token_too_large",
    "mac": "token_type",
    "no_id_token": "token_no_id_token",
}


@pytest.mark.parametrize("mode", sorted(RP10_CASES))
def test_rp10_upstream_token_endpoint_misbehaviour_fails_gracefully(
    login_broker: BrokerProcess, app: Client, fake_idp: FakeIdp, mode: str
) -> None:
    fake_idp.tenants["main"].mode = mode
    browser = Browser()
    started = time.monotonic()
    error = client_error(browser, login_broker, app, "fake", state=f"rp10-{mode}")
    elapsed = time.monotonic() - started
    assert error == {
        "error": "temporarily_unavailable",
        "error_description": "The home organisation's login service is not available.",
        "state": f"rp10-{mode}",
        "iss": login_broker.issuer,
    }
    assert elapsed < 8, elapsed  # bounded by the connector's 1 s timeout, not by the upstream's 15 s drip
    assert last_abort(login_broker) == RP10_CASES[mode]
    assert not logged_in(browser, login_broker)
