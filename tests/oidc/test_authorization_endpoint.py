"""THREAT-MODEL 3a: the authorization endpoint (OA-01 .. OA-14)."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import (
    Client,
    authorize,
    browser_code,
    claims,
    consent,
    follow,
    login,
    pkce_pair,
    query_of,
    redeem,
)

MUTATIONS = [
    "https://app.example/cb/",
    "https://app.example/CB",
    "HTTPS://APP.EXAMPLE/cb",
    "https://app.example:443/cb",
    "http://app.example/cb",
    "https://app.example/cb?a=1",
    "https://app.example/cb#x",
    "https://app.example/cb/../evil",
    "https://app.example/cb/..;/evil",
    "https://app.example/cb%2f..%2fevil",
    "https://app.example/cb%00",
    "https://app.example@evil.test/cb",
    "https://app.example.evil.test/cb",
    "https://evil.test\\@app.example/cb",
    "https://\u0430pp.example/cb",
    "//evil.test",
    " https://app.example/cb",
    "https://app.example/cb ",
]


def _is_error_page(response: requests.Response) -> bool:
    return (
        response.status_code == 400
        and "Location" not in response.headers
        and response.headers["Content-Type"].startswith("text/html")
    )


@pytest.mark.parametrize("uri", MUTATIONS)
def test_oa01_redirect_uri_exact_match(broker: BrokerProcess, app: Client, uri: str) -> None:
    response = authorize(requests.Session(), broker, Client("app", None, uri))
    assert _is_error_page(response)


def test_oa01_double_redirect_uri_parameter_is_an_error_page(broker: BrokerProcess, app: Client) -> None:
    response = requests.get(
        broker.url("/authorize"),
        params=[
            ("client_id", "app"),
            ("redirect_uri", app.redirect_uri),
            ("redirect_uri", "https://evil.test/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
        ],
        allow_redirects=False,
        timeout=10,
    )
    assert _is_error_page(response)


@pytest.mark.parametrize(
    "second_error",
    [
        {"response_type": "token"},
        {"scope": "profile"},
        {"scope": "openid admin"},
        {"code_challenge": "x" * 43, "code_challenge_method": "plain"},
    ],
)
def test_oa02_errors_never_redirect_to_unvalidated_uri(broker: BrokerProcess, second_error: dict[str, str]) -> None:
    response = authorize(requests.Session(), broker, Client("app", None, "https://evil.test/cb"), **second_error)
    assert _is_error_page(response)


@pytest.mark.parametrize(
    "client_id,redirect_uri",
    [
        ("multi", None),
        ("nobody", "https://app.example/cb"),
        ("", "https://app.example/cb"),
    ],
)
def test_oa03_missing_redirect_uri_or_unknown_client(
    broker: BrokerProcess, client_id: str, redirect_uri: str | None
) -> None:
    params = {"client_id": client_id, "response_type": "code", "scope": "openid"}
    if redirect_uri:
        params["redirect_uri"] = redirect_uri
    response = requests.get(broker.url("/authorize"), params=params, allow_redirects=False, timeout=10)
    assert _is_error_page(response)


@pytest.mark.parametrize(
    "response_type,error",
    [
        (None, "invalid_request"),
        ("token", "unsupported_response_type"),
        ("id_token", "unsupported_response_type"),
        ("code id_token", "unsupported_response_type"),
        ("code token", "unsupported_response_type"),
        ("none", "unsupported_response_type"),
        ("bogus", "unsupported_response_type"),
    ],
)
def test_oa04_response_type_handling(broker: BrokerProcess, app: Client, response_type: str | None, error: str) -> None:
    response = authorize(requests.Session(), broker, app, response_type=response_type, state="s1")
    assert response.status_code == 303
    query = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(app.redirect_uri)
    assert query["error"] == error and query["state"] == "s1" and query["iss"] == broker.issuer


def test_oa04_duplicated_response_type_is_invalid_request(broker: BrokerProcess, app: Client) -> None:
    response = requests.get(
        broker.url("/authorize"),
        params=[
            ("client_id", "app"),
            ("redirect_uri", app.redirect_uri),
            ("response_type", "code"),
            ("response_type", "code"),
            ("scope", "openid"),
        ],
        allow_redirects=False,
        timeout=10,
    )
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_oa05_pkce_required_for_public_client_and_plain_refused(
    broker: BrokerProcess, app: Client, public_client: Client
) -> None:
    missing = authorize(requests.Session(), broker, public_client, code_challenge=None)
    assert query_of(missing.headers["Location"])["error"] == "invalid_request"
    plain = authorize(requests.Session(), broker, app, code_challenge="a" * 43, code_challenge_method="plain")
    assert query_of(plain.headers["Location"])["error"] == "invalid_request"
    no_method = authorize(requests.Session(), broker, app, code_challenge="a" * 43)
    assert query_of(no_method.headers["Location"])["error"] == "invalid_request"
    assert broker.discovery()["code_challenge_methods_supported"] == ["S256"]


def test_oa05_pkce_required_of_confidential_clients_by_default(
    broker: BrokerProcess, app: Client, relaxed: Client
) -> None:
    """Issue 11 item 8: a confidential client must send PKCE unless the operator relaxed it for that client."""
    http = requests.Session()
    browser_code(http, broker, app, remember=True)  # logged in, consent remembered: only PKCE can refuse
    missing = query_of(authorize(http, broker, app, code_challenge=None).headers["Location"])
    assert missing["error"] == "invalid_request" and "PKCE" in missing["error_description"]
    query, _ = browser_code(http, broker, relaxed, code_challenge=None, remember=True)
    tokens = redeem(broker, relaxed, query["code"])
    assert tokens.status_code == 200, tokens.text
    relaxations = [line for line in broker.log_text().splitlines() if "PKCE relaxed" in line]
    assert len(relaxations) == 1 and "'relaxed'" in relaxations[0], relaxations
    assert "'app'" not in broker.log_text()


def test_oa05_verifier_missing_wrong_or_downgraded_is_invalid_grant(
    broker: BrokerProcess, app: Client, relaxed: Client
) -> None:
    http = requests.Session()
    verifier, challenge = pkce_pair()
    cases = [None, pkce_pair()[0], "short", "x" * 129, "bad chars!" * 5]
    for presented in cases:
        query, _ = browser_code(
            http, broker, app, code_challenge=challenge, code_challenge_method="S256", remember=True
        )
        response = redeem(broker, app, query["code"], presented)
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant", presented
    # (5) downgrade: no challenge at /authorize, but a verifier at /token (only a client that
    # may skip PKCE can be asked for a code without a challenge)
    query, _ = browser_code(http, broker, relaxed, code_challenge=None, remember=True)
    response = redeem(broker, relaxed, query["code"], verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_oa06_state_and_nonce_round_trip(broker: BrokerProcess, app: Client) -> None:
    http = requests.Session()
    # gunicorn caps the request line at 4094 bytes: a GET carries ~1 KB of escaped state, a POST 2 KB
    state = ("<>\"'& " * 200)[:1024]
    query, _ = browser_code(http, broker, app, state=state, nonce="nonce-<>&", remember=True)
    assert query["state"] == state
    tokens = redeem(broker, app, query["code"]).json()
    assert claims(tokens["id_token"])["nonce"] == "nonce-<>&"
    query, _ = browser_code(http, broker, app)
    assert "state" not in query
    assert "nonce" not in claims(redeem(broker, app, query["code"]).json()["id_token"])
    long_state = ("<>\"'& " * 400)[:2048]
    for response_type in ("code", "token"):
        posted = http.post(
            broker.url("/authorize"),
            data={
                "client_id": "app",
                "redirect_uri": app.redirect_uri,
                "response_type": response_type,
                "scope": "openid ga4gh_passport_v1",
                "state": long_state,
                "code_challenge": pkce_pair()[1],
                "code_challenge_method": "S256",
            },
            allow_redirects=False,
            timeout=10,
        )
        assert query_of(posted.headers["Location"])["state"] == long_state


def test_oa07_iss_in_every_authorization_response(broker: BrokerProcess, app: Client) -> None:
    assert broker.discovery()["authorization_response_iss_parameter_supported"] is True
    http = requests.Session()
    query, _ = browser_code(http, broker, app, remember=True)
    assert query["iss"] == broker.issuer
    for bad in ({"response_type": "token"}, {"scope": "openid admin"}, {"request": "x"}):
        query = query_of(authorize(http, broker, app, **bad).headers["Location"])
        assert query["iss"] == broker.issuer and "error" in query
    denied = authorize(requests.Session(), broker, app, prompt="none")
    assert query_of(denied.headers["Location"]) == {
        "error": "login_required",
        "error_description": "The user is not logged in.",
        "iss": broker.issuer,
    }


def test_oa08_prompt_and_max_age(broker: BrokerProcess, app: Client) -> None:
    http = requests.Session()
    query, _ = browser_code(http, broker, app, remember=True)
    first = claims(redeem(broker, app, query["code"]).json()["id_token"])
    silent = authorize(http, broker, app, prompt="none")
    assert "code" in query_of(silent.headers["Location"])
    needs_consent = authorize(http, broker, app, scope="openid profile", prompt="none")
    assert query_of(needs_consent.headers["Location"])["error"] == "consent_required"
    time.sleep(1.1)
    forced = authorize(http, broker, app, prompt="login")
    assert "/login" in forced.headers["Location"]
    relogin = login(http, broker, follow(http, broker, forced))
    done = follow(http, broker, relogin)
    second = claims(redeem(broker, app, query_of(done.headers["Location"])["code"]).json()["id_token"])
    assert second["auth_time"] > first["auth_time"]
    time.sleep(1.1)
    aged = authorize(http, broker, app, max_age="0")
    assert "/login" in aged.headers["Location"]
    fine = authorize(http, broker, app, max_age="10000")
    assert "code" in query_of(fine.headers["Location"])


def test_oa08_id_token_hint_for_another_user_requires_login(broker: BrokerProcess, app: Client) -> None:
    bob = requests.Session()
    query, _ = browser_code(bob, broker, app, username="bob", remember=True)
    bob_id_token = redeem(broker, app, query["code"]).json()["id_token"]
    alice = requests.Session()
    browser_code(alice, broker, app, remember=True)
    response = authorize(alice, broker, app, prompt="none", id_token_hint=bob_id_token)
    assert query_of(response.headers["Location"])["error"] == "login_required"
    forged = authorize(alice, broker, app, id_token_hint=bob_id_token[:-4] + "AAAA")
    assert query_of(forged.headers["Location"])["error"] == "invalid_request"


def test_oa09_unknown_parameters_post_and_scope_order(broker: BrokerProcess, app: Client) -> None:
    http = requests.Session()
    browser_code(http, broker, app, remember=True)
    extra = authorize(http, broker, app, extra="foobar")
    assert "code" in query_of(extra.headers["Location"])
    posted = http.post(
        broker.url("/authorize"),
        data={
            "client_id": "app",
            "redirect_uri": app.redirect_uri,
            "response_type": "code",
            "scope": "ga4gh_passport_v1 openid",
            "code_challenge": pkce_pair()[1],
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert "code" in query_of(posted.headers["Location"])


@pytest.mark.parametrize(
    "param,error",
    [
        ("request", "request_not_supported"),
        ("request_uri", "request_uri_not_supported"),
    ],
)
def test_oa10_request_objects_not_supported(broker: BrokerProcess, app: Client, param: str, error: str) -> None:
    response = authorize(requests.Session(), broker, app, **{param: "http://127.0.0.1:6379/"})
    assert query_of(response.headers["Location"])["error"] == error
    assert broker.discovery()["request_uri_parameter_supported"] is False


def test_oa11_consent_csrf(broker: BrokerProcess, app: Client) -> None:
    http = requests.Session()
    start = authorize(http, broker, app, scope="openid email", prompt="consent")
    consent_redirect = login(http, broker, follow(http, broker, start))
    consent_page = follow(http, broker, follow(http, broker, consent_redirect))
    assert "consent" in consent_page.url
    interaction = re.search(r'name="interaction" value="([^"]+)"', consent_page.text).group(1)
    no_token = http.post(
        broker.url("/consent"),
        data={"interaction": interaction, "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )
    assert no_token.status_code == 403
    # a token from another session does not verify
    attacker = requests.Session()
    a_start = authorize(attacker, broker, app, scope="openid email", prompt="consent")
    a_consent = follow(
        attacker,
        broker,
        follow(attacker, broker, login(attacker, broker, follow(attacker, broker, a_start), username="bob")),
    )
    a_token = re.search(r'name="csrf_token" value="([^"]+)"', a_consent.text).group(1)
    foreign = http.post(
        broker.url("/consent"),
        data={"interaction": interaction, "decision": "allow", "csrf_token": a_token},
        allow_redirects=False,
        timeout=10,
    )
    assert foreign.status_code == 403
    # a token for another interaction of the same session does not verify either
    second_page = follow(http, broker, authorize(http, broker, app, scope="openid profile", prompt="consent"))
    second_token = re.search(r'name="csrf_token" value="([^"]+)"', second_page.text).group(1)
    crossed = http.post(
        broker.url("/consent"),
        data={"interaction": interaction, "decision": "allow", "csrf_token": second_token},
        allow_redirects=False,
        timeout=10,
    )
    assert crossed.status_code == 403
    assert "SameSite=Lax" in start.headers["Set-Cookie"] and "HttpOnly" in start.headers["Set-Cookie"]
    ok = consent(http, broker, consent_page)
    assert ok.status_code == 303 and "code" in query_of(ok.headers["Location"])


def test_oa12_login_and_consent_pages_cannot_be_framed(broker: BrokerProcess, app: Client) -> None:
    http = requests.Session()
    login_page = follow(http, broker, authorize(http, broker, app, prompt="consent"))
    assert login_page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in login_page.headers["Content-Security-Policy"]
    consent_page = follow(http, broker, follow(http, broker, login(http, broker, login_page)))
    assert consent_page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in consent_page.headers["Content-Security-Policy"]


def test_oa13_redirects_after_credential_post_are_303(broker: BrokerProcess, app: Client) -> None:
    http = requests.Session()
    login_page = follow(http, broker, authorize(http, broker, app, scope="openid profile email", prompt="consent"))
    after_login = login(http, broker, login_page)
    assert after_login.status_code == 303
    consent_page = follow(http, broker, follow(http, broker, after_login))
    after_consent = consent(http, broker, consent_page)
    assert after_consent.status_code == 303


def test_oa14_codes_unique_long_and_short_lived(broker: BrokerProcess, app: Client) -> None:
    http = requests.Session()
    browser_code(http, broker, app, remember=True)
    codes = set()
    for _ in range(30):
        codes.add(query_of(authorize(http, broker, app).headers["Location"])["code"])
    assert len(codes) == 30
    assert all(len(code) >= 43 for code in codes)
    from broker.oidc.settings import OidcSettings

    assert OidcSettings().code_lifetime_seconds <= 60


def _interaction_of(response: requests.Response) -> str:
    location = response.headers["Location"]
    assert "/login" in location, location
    return query_of(location)["interaction"]


def _consent_get(http: requests.Session, broker: BrokerProcess, uid: str) -> requests.Response:
    return http.get(broker.url("/consent"), params={"interaction": uid}, allow_redirects=False, timeout=10)


def test_oa08_prompt_login_max_age_and_id_token_hint_are_enforced_at_consent(
    broker: BrokerProcess, app: Client
) -> None:
    """Issue 11 item 7: GET/POST /consent?interaction=<id> issue no code to a stale login or another user's session."""
    alice = requests.Session()
    browser_code(alice, broker, app)  # logged in; nothing remembered, so openid email asks consent
    time.sleep(1.1)
    # prompt=login, and alice skips the login page and goes straight to consent
    forced = authorize(alice, broker, app, scope="openid email", prompt="login")
    skipped = _consent_get(alice, broker, _interaction_of(forced))
    assert skipped.status_code == 303 and "/login" in skipped.headers["Location"], skipped.text[:300]
    # max_age: the consent page was shown while the login was fresh enough, the answer comes too late
    aged = authorize(alice, broker, app, scope="openid email", max_age="2")
    page = follow(alice, broker, aged)
    assert page.status_code == 200 and 'name="csrf_token"' in page.text, page.text[:300]
    time.sleep(3.1)
    late = consent(alice, broker, page)
    assert late.status_code == 303 and "/login" in late.headers["Location"], late.headers.get("Location")
    assert "code=" not in late.headers["Location"]
    # id_token_hint of bob: alice's session may not answer it, neither stale nor freshly logged in as alice
    bob = requests.Session()
    bob_query, _ = browser_code(bob, broker, app, username="bob", remember=True)
    bob_id_token = redeem(broker, app, bob_query["code"]).json()["id_token"]
    hinted = authorize(alice, broker, app, scope="openid email", id_token_hint=bob_id_token)
    uid = _interaction_of(hinted)
    stale = _consent_get(alice, broker, uid)
    assert stale.status_code == 303 and "/login" in stale.headers["Location"]
    relogin = login(alice, broker, follow(alice, broker, hinted))
    assert relogin.status_code == 303
    other_user = _consent_get(alice, broker, uid)
    assert other_user.status_code == 303 and other_user.headers["Location"].startswith(app.redirect_uri)
    assert query_of(other_user.headers["Location"])["error"] == "login_required"
    # and the legitimate way still works: a fresh login answers prompt=login through /consent
    fresh = authorize(alice, broker, app, scope="openid email", prompt="login")
    done = login(alice, broker, follow(alice, broker, fresh))
    page = follow(alice, broker, follow(alice, broker, done))
    allowed = consent(alice, broker, page)
    assert "code" in query_of(allowed.headers["Location"])
