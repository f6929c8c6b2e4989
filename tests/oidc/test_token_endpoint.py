"""THREAT-MODEL 3b: the token endpoint (OA-15 .. OA-23) and client authentication."""

from __future__ import annotations

import threading
import time
import uuid

import jwt
import pytest
import requests

from tests.oidc.broker_process import BrokerProcess
from tests.oidc.conftest import SECRETS
from tests.oidc.flow import Client, browser_code, full_login, pkce_pair, redeem

NO_STORE_HEADERS = ("Cache-Control", "Pragma")


def _code(broker: BrokerProcess, client: Client, http: requests.Session | None = None, **params: str) -> str:
    query, _ = browser_code(http or requests.Session(), broker, client, remember=True, **params)
    return query["code"]


def _userinfo(broker: BrokerProcess, access_token: str) -> requests.Response:
    return requests.get(broker.url("/userinfo"), headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


def _refresh(broker: BrokerProcess, client: Client, token: str, **extra: str) -> requests.Response:
    return requests.post(
        broker.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": token, **extra},
        auth=client.auth,
        timeout=10,
    )


def test_oa15_code_reuse_fails_and_revokes_the_first_tokens(broker: BrokerProcess, app: Client) -> None:
    code = _code(broker, app)
    first = redeem(broker, app, code)
    assert first.status_code == 200
    tokens = first.json()
    assert _userinfo(broker, tokens["access_token"]).status_code == 200
    second = redeem(broker, app, code)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert second.headers["Cache-Control"] == "no-cache, no-store" and second.headers["Pragma"] == "no-cache"
    revoked = _userinfo(broker, tokens["access_token"])
    assert revoked.status_code == 401 and 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]
    assert _refresh(broker, app, tokens["refresh_token"]).json()["error"] == "invalid_grant"


RACE_ROUNDS = 20  # THREAT-MODEL OA-16: repeat 20 times
RACERS = 50


def _race(broker: BrokerProcess, client: Client, code: str) -> list[requests.Response]:
    """RACERS redemptions of one code released together (a barrier, each on its own connection)."""
    barrier = threading.Barrier(RACERS)
    results: list[requests.Response] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        response = redeem(broker, client, code)
        with lock:
            results.append(response)

    threads = [threading.Thread(target=attempt) for _ in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("round_", range(RACE_ROUNDS))
def test_oa16_concurrent_redemption_one_wins_and_its_tokens_are_revoked(
    broker: BrokerProcess, app: Client, round_: int
) -> None:
    results = _race(broker, app, _code(broker, app))
    winners = [r for r in results if r.status_code == 200]
    losers = [r for r in results if r.status_code != 200]
    assert len(winners) == 1
    assert [(r.status_code, r.json()["error"]) for r in losers] == [(400, "invalid_grant")] * (RACERS - 1)
    tokens = winners[0].json()
    # A second redemption was attempted: the winner's grant is revoked, whichever request came first.
    assert _userinfo(broker, tokens["access_token"]).status_code == 401
    assert _refresh(broker, app, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    introspected = requests.post(
        broker.url("/introspect"), data={"token": tokens["refresh_token"]}, auth=app.auth, timeout=10
    )
    assert introspected.json() == {"active": False}


def test_oa15_code_reuse_after_a_pause_still_revokes(broker: BrokerProcess, app: Client) -> None:
    code = _code(broker, app)
    tokens = redeem(broker, app, code).json()
    refreshed = _refresh(broker, app, tokens["refresh_token"]).json()  # the grant lives on after rotation
    time.sleep(1.1)
    assert redeem(broker, app, code).json()["error"] == "invalid_grant"
    assert _userinfo(broker, refreshed["access_token"]).status_code == 401
    assert _refresh(broker, app, refreshed["refresh_token"]).json()["error"] == "invalid_grant"


def test_oa17_code_bound_to_client_and_redirect_uri(broker: BrokerProcess, app: Client, other: Client) -> None:
    stolen = redeem(broker, other, _code(broker, app))
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    wrong_uri = redeem(broker, app, _code(broker, app), redirect_uri="https://app.example/cb2")
    assert wrong_uri.json()["error"] == "invalid_grant"
    code = _code(broker, app)
    omitted = requests.post(
        broker.url("/token"), data={"grant_type": "authorization_code", "code": code}, auth=app.auth, timeout=10
    )
    assert omitted.status_code == 400 and omitted.json()["error"] == "invalid_grant"


def test_oa18_client_authentication_rules(broker: BrokerProcess, app: Client) -> None:
    url = broker.url("/token")
    base = {"grant_type": "authorization_code", "code": "x", "redirect_uri": app.redirect_uri}
    wrong_basic = requests.post(url, data=base, auth=("app", "wrong"), timeout=10)
    assert wrong_basic.status_code == 401 and wrong_basic.json()["error"] == "invalid_client"
    assert wrong_basic.headers["WWW-Authenticate"].startswith("Basic realm=")
    wrong_post = requests.post(url, data={**base, "client_id": "app-post", "client_secret": "wrong"}, timeout=10)
    assert wrong_post.status_code == 401 and wrong_post.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" not in wrong_post.headers
    both = requests.post(
        url, data={**base, "client_id": "app", "client_secret": SECRETS["app"]}, auth=app.auth, timeout=10
    )
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"
    mismatch = requests.post(url, data={**base, "client_id": "other"}, auth=app.auth, timeout=10)
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "invalid_request"
    trailing = requests.post(url, data=base, auth=("app", SECRETS["app"] + " "), timeout=10)
    assert trailing.status_code == 401
    wrong_method = requests.post(url, data={**base, "client_id": "app", "client_secret": SECRETS["app"]}, timeout=10)
    assert wrong_method.status_code == 401  # app is registered for client_secret_basic only
    public_as_confidential = requests.post(url, data={**base, "client_id": "app"}, timeout=10)
    assert public_as_confidential.status_code == 401
    right = requests.post(url, data=base, auth=app.auth, timeout=10)
    assert right.status_code == 400 and right.json()["error"] == "invalid_grant"  # authenticated; the code is bad


def _assertion(key: object, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "iss": "jwtapp",
        "sub": "jwtapp",
        "aud": overrides.pop("aud_value", None),
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "client-key-1"})


def test_oa19_private_key_jwt_assertion_validation(broker: BrokerProcess, jwt_client_key: object) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    url = broker.url("/token")
    issuer = broker.issuer

    def post(assertion: str) -> requests.Response:
        return requests.post(
            url,
            data={
                "grant_type": "authorization_code",
                "code": "x",
                "redirect_uri": "https://app.example/cb",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
            timeout=10,
        )

    good = _assertion(jwt_client_key, aud_value=issuer)
    assert post(good).json()["error"] == "invalid_grant"  # authenticated
    assert post(good).status_code == 401  # replay of the same jti
    stranger = ec.generate_private_key(ec.SECP256R1())
    bad_cases = [
        _assertion(jwt_client_key, aud_value=issuer, iss="other"),
        _assertion(jwt_client_key, aud_value=issuer, sub="other"),
        _assertion(jwt_client_key, aud_value=[issuer, "https://other.as/"]),
        _assertion(jwt_client_key, aud_value="https://other.as/"),
        _assertion(jwt_client_key, aud_value=issuer, exp=int(time.time()) + 86400),
        _assertion(jwt_client_key, aud_value=issuer, jti=None),
        _assertion(stranger, aud_value=issuer),
        jwt.encode(
            {"iss": "jwtapp", "sub": "jwtapp", "aud": issuer, "exp": int(time.time()) + 60, "jti": "n"},
            None,
            algorithm="none",
        ),
        jwt.encode(
            {"iss": "jwtapp", "sub": "jwtapp", "aud": issuer, "exp": int(time.time()) + 60, "jti": "h"},
            "secret-key-of-at-least-32-bytes!!",
            algorithm="HS256",
        ),
    ]
    for assertion in bad_cases:
        response = post(assertion)
        assert response.status_code == 401 and response.json()["error"] == "invalid_client", assertion
    assert "PS256" not in broker.discovery()["token_endpoint_auth_signing_alg_values_supported"]
    token_endpoint = _assertion(jwt_client_key, aud_value=broker.url("/token"))
    assert post(token_endpoint).json()["error"] == "invalid_grant"


def test_oa20_refresh_binding_rotation_and_reuse_detection(broker: BrokerProcess, app: Client, other: Client) -> None:
    tokens = full_login(broker, app)
    # (1) another client
    assert _refresh(broker, other, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    tokens = full_login(broker, app)
    rotated = _refresh(broker, app, tokens["refresh_token"]).json()
    newest = _refresh(broker, app, rotated["refresh_token"]).json()
    # (2) reuse of a rotated token (its successor already used: no retry) revokes the whole family,
    # newest token included
    reused = _refresh(broker, app, tokens["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert _refresh(broker, app, newest["refresh_token"]).json()["error"] == "invalid_grant"
    assert _userinfo(broker, newest["access_token"]).status_code == 401
    # (3) two parallel refreshes (a retry racing the first try): both get the one successor
    tokens = full_login(broker, app)
    results: list[requests.Response] = []
    barrier = threading.Barrier(2)

    def attempt() -> None:
        barrier.wait()
        results.append(_refresh(broker, app, tokens["refresh_token"]))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200], [r.text[:200] for r in results]
    assert results[0].json()["refresh_token"] == results[1].json()["refresh_token"]
    assert _refresh(broker, app, results[0].json()["refresh_token"]).status_code == 200
    # (4) extra scope
    tokens = full_login(broker, app)
    extra = _refresh(broker, app, tokens["refresh_token"], scope="openid ga4gh_passport_v1 email")
    assert extra.status_code == 400 and extra.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    "grant_type,error",
    [
        ("password", "unsupported_grant_type"),
        ("implicit", "unsupported_grant_type"),
        ("client_credentials", "unsupported_grant_type"),
    ],
)
def test_oa21_unsupported_grants(broker: BrokerProcess, app: Client, grant_type: str, error: str) -> None:
    response = requests.post(broker.url("/token"), data={"grant_type": grant_type}, auth=app.auth, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == error


def test_oa21_grant_not_allowed_for_client_and_get_token(broker: BrokerProcess, public_client: Client) -> None:
    response = requests.post(
        broker.url("/token"),
        data={"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "client_id": "cli"},
        timeout=10,
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert requests.get(broker.url("/token"), timeout=10).status_code == 405


def test_oa22_token_response_hygiene(broker: BrokerProcess, app: Client) -> None:
    code = _code(broker, app)
    response = redeem(broker, app, code)
    assert response.headers["Content-Type"].startswith("application/json")
    assert "no-store" in response.headers["Cache-Control"] and response.headers["Pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], int) and body["expires_in"] > 0
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")
    assert set(body["access_token"]) <= allowed and set(body["refresh_token"]) <= allowed


def test_oa23_duplicate_oversized_and_non_form_parameters(broker: BrokerProcess, app: Client) -> None:
    url = broker.url("/token")
    dup = requests.post(
        url, data=[("grant_type", "authorization_code"), ("code", "a"), ("code", "b")], auth=app.auth, timeout=10
    )
    assert dup.status_code == 400 and dup.json()["error"] == "invalid_request"
    big = requests.post(
        url, data={"grant_type": "authorization_code", "code": "x" * (5 * 1024 * 1024)}, auth=app.auth, timeout=30
    )
    assert big.status_code == 413
    as_json = requests.post(url, json={"grant_type": "authorization_code", "code": "x"}, auth=app.auth, timeout=10)
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    non_utf8 = requests.post(
        url,
        data=b"grant_type=authorization_code&code=%ff%fe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=app.auth,
        timeout=10,
    )
    assert non_utf8.status_code == 400
    many = requests.post(
        url,
        data="&".join(f"p{i}=v" for i in range(10000)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=app.auth,
        timeout=10,
    )
    assert many.status_code in (400, 413)


def test_public_client_code_flow_with_pkce(broker: BrokerProcess, public_client: Client) -> None:
    verifier, challenge = pkce_pair()
    query, _ = browser_code(
        requests.Session(), broker, public_client, code_challenge=challenge, code_challenge_method="S256"
    )
    response = redeem(broker, public_client, query["code"], verifier)
    assert response.status_code == 200, response.text
