"""THREAT-MODEL 3c: userinfo, introspection, revocation, discovery, JWKS, logout (OA-24 .. OA-34)."""

from __future__ import annotations

import re

import pytest
import requests

from broker.errors import StartupError
from broker.oidc.consent import Consents
from broker.oidc.discovery import metadata, validate
from broker.oidc.repository import OidcRepository
from broker.oidc.settings import OidcSettings
from broker.settings import load_settings
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, browser_code, claims, full_login, pkce_pair, query_of, redeem
from tests.support.legacy_store import open_store


def _userinfo(broker: BrokerProcess, **kwargs: object) -> requests.Response:
    return requests.request(kwargs.pop("method", "GET"), broker.url("/userinfo"), timeout=10, **kwargs)


def test_oa24_userinfo_access_control(broker: BrokerProcess, app: Client) -> None:
    tokens = full_login(broker, app)
    at = tokens["access_token"]
    none = _userinfo(broker)
    assert none.status_code == 401 and "error=" not in none.headers["WWW-Authenticate"]
    assert none.headers["WWW-Authenticate"].startswith("Bearer realm=")
    bad = _userinfo(broker, headers={"Authorization": "Bearer " + at[:-5] + "AAAAA"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    query = _userinfo(broker, params={"access_token": at})
    assert query.status_code == 400 and query.json()["error"] == "invalid_request"
    both = _userinfo(broker, method="POST", headers={"Authorization": f"Bearer {at}"}, data={"access_token": at})
    assert both.status_code == 400
    lower = _userinfo(broker, headers={"Authorization": f"bearer {at}"})
    assert lower.status_code == 200 and lower.json()["sub"] == claims(tokens["id_token"])["sub"]
    assert "no-store" in lower.headers["Cache-Control"]
    body = _userinfo(broker, method="POST", data={"access_token": at})
    assert body.status_code == 200
    id_token_as_bearer = _userinfo(broker, headers={"Authorization": f"Bearer {tokens['id_token']}"})
    assert id_token_as_bearer.status_code == 401


def _introspect(broker: BrokerProcess, client: Client | None, token: str, **extra: str) -> requests.Response:
    return requests.post(
        broker.url("/introspect"), data={"token": token, **extra}, auth=client.auth if client else None, timeout=10
    )


def test_oa25_introspection_authorization(broker: BrokerProcess, app: Client, other: Client) -> None:
    tokens = full_login(broker, app)
    unauthenticated = _introspect(broker, None, tokens["access_token"])
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"] == "invalid_client"
    mine = _introspect(broker, app, tokens["access_token"])
    assert mine.status_code == 200 and mine.json()["active"] is True and mine.json()["client_id"] == "app"
    foreign = _introspect(broker, other, tokens["access_token"])
    assert foreign.json() == {"active": False}
    foreign_refresh = _introspect(broker, other, tokens["refresh_token"], token_type_hint="refresh_token")
    assert foreign_refresh.json() == {"active": False}
    for junk in ("x", "a.b.c", tokens["id_token"]):
        response = _introspect(broker, app, junk)
        assert response.status_code == 200 and response.json() == {"active": False}


def test_oa25_introspection_of_refresh_tokens(broker: BrokerProcess, app: Client, other: Client) -> None:
    tokens = full_login(broker, app)
    sub = claims(tokens["id_token"])["sub"]
    for hint in ({"token_type_hint": "refresh_token"}, {"token_type_hint": "access_token"}, {}):
        answer = _introspect(broker, app, tokens["refresh_token"], **hint)
        assert answer.status_code == 200 and "no-store" in answer.headers["Cache-Control"]
        body = answer.json()
        assert body["active"] is True and body["client_id"] == "app" and body["sub"] == sub
        assert body["scope"] == "openid ga4gh_passport_v1" and body["iss"] == broker.issuer
        assert body["iat"] <= body["exp"] and "token_type" not in body and "aud" not in body
    # the access token is still found when the hint says refresh_token
    assert _introspect(broker, app, tokens["access_token"], token_type_hint="refresh_token").json()["active"]
    assert _introspect(broker, other, tokens["refresh_token"]).json() == {"active": False}
    rotated = requests.post(
        broker.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=app.auth,
        timeout=10,
    ).json()
    assert _introspect(broker, app, tokens["refresh_token"]).json() == {"active": False}
    assert _introspect(broker, app, rotated["refresh_token"]).json()["active"] is True
    requests.post(broker.url("/revoke"), data={"token": rotated["refresh_token"]}, auth=app.auth, timeout=10)
    assert _introspect(broker, app, rotated["refresh_token"]).json() == {"active": False}


def test_oa20_consent_withdrawal_ends_the_clients_grants_at_the_running_broker(
    broker: BrokerProcess, app: Client, other: Client
) -> None:
    mine = full_login(broker, app, username="bob", remember=True)
    elsewhere = full_login(broker, other, username="bob")
    sub = claims(mine["id_token"])["sub"]
    settings = load_settings(broker.config_path, environ={})
    store = open_store(settings)  # the broker's own store, as the account page would use it
    try:
        consents = Consents(OidcRepository(store.kernel, family_marker_seconds=3600), settings.oidc)
        assert consents.get(sub, "app") is not None
        assert consents.withdraw(sub, "app") is True
        assert consents.get(sub, "app") is None
    finally:
        store.close()
    refreshed = requests.post(
        broker.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": mine["refresh_token"]},
        auth=app.auth,
        timeout=10,
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert _userinfo(broker, headers={"Authorization": f"Bearer {mine['access_token']}"}).status_code == 401
    assert _introspect(broker, app, mine["access_token"]).json() == {"active": False}
    assert _userinfo(broker, headers={"Authorization": f"Bearer {elsewhere['access_token']}"}).status_code == 200
    # Bob consents again and the new grant works.
    again = full_login(broker, app, username="bob")
    assert _userinfo(broker, headers={"Authorization": f"Bearer {again['access_token']}"}).status_code == 200


def test_oa26_revocation_endpoint(broker: BrokerProcess, app: Client, other: Client) -> None:
    tokens = full_login(broker, app)
    unauthenticated = requests.post(broker.url("/revoke"), data={"token": tokens["access_token"]}, timeout=10)
    assert unauthenticated.status_code == 401
    by_other = requests.post(
        broker.url("/revoke"), data={"token": tokens["refresh_token"]}, auth=other.auth, timeout=10
    )
    assert by_other.status_code == 200 and by_other.content == b""
    by_other_at = requests.post(
        broker.url("/revoke"), data={"token": tokens["access_token"]}, auth=other.auth, timeout=10
    )
    assert by_other_at.status_code == 200
    assert _introspect(broker, app, tokens["access_token"]).json()["active"] is True
    unknown = requests.post(broker.url("/revoke"), data={"token": "nope"}, auth=app.auth, timeout=10)
    assert unknown.status_code == 200
    wrong_hint = requests.post(
        broker.url("/revoke"),
        data={"token": tokens["refresh_token"], "token_type_hint": "access_token"},
        auth=app.auth,
        timeout=10,
    )
    assert wrong_hint.status_code == 200
    assert _introspect(broker, app, tokens["access_token"]).json() == {"active": False}
    refreshed = requests.post(
        broker.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=app.auth,
        timeout=10,
    )
    assert refreshed.json()["error"] == "invalid_grant"


def test_oa27_discovery_ignores_host_headers(broker: BrokerProcess) -> None:
    plain = requests.get(broker.url("/.well-known/openid-configuration"), timeout=10).json()
    spoofed = requests.get(
        broker.url("/.well-known/openid-configuration"),
        timeout=10,
        headers={"Host": "evil.test", "X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "https"},
    ).json()
    assert plain == spoofed and plain["issuer"] == broker.issuer
    assert all(v.startswith(broker.issuer.rstrip("/")) for k, v in plain.items() if k.endswith("_endpoint"))
    assert "openid" in plain["scopes_supported"] and plain["response_types_supported"] == ["code"]
    assert "none" not in plain["id_token_signing_alg_values_supported"]
    assert plain["code_challenge_methods_supported"] == ["S256"]
    assert plain["authorization_response_iss_parameter_supported"] is True


def test_discovery_is_valid_rfc8414_openid_and_rfc9207_metadata(broker: BrokerProcess) -> None:
    """What we serve passes authlib's metadata models (run at start-up too; here on the live document)."""
    from authlib.oauth2 import rfc8414, rfc9207
    from authlib.oidc.discovery import OpenIDProviderMetadata

    served = broker.discovery()
    OpenIDProviderMetadata(served).validate(
        metadata_classes=[rfc8414.AuthorizationServerMetadata, rfc9207.AuthorizationServerMetadata]
    )
    assert served == metadata(broker.issuer)


@pytest.mark.parametrize(
    "change",
    [
        {"token_endpoint_auth_signing_alg_values_supported": ["none"]},
        {"authorization_response_iss_parameter_supported": "yes"},
        {"issuer": "https://op.example/?tenant=1"},
        {"response_types_supported": "code"},
    ],
)
def test_metadata_the_specifications_refuse_stops_the_op_from_starting(change: dict[str, object]) -> None:
    with pytest.raises(StartupError):
        validate({**metadata("https://op.example/"), **change})


def test_oa28_jwks_publishes_public_signing_keys(broker: BrokerProcess) -> None:
    response = requests.get(broker.url("/.well-known/jwks.json"), timeout=10)
    keys = response.json()["keys"]
    assert keys and len({k["kid"] for k in keys}) == len(keys)
    for key in keys:
        assert key["use"] == "sig" and key["alg"] in ("ES256", "RS256") and "d" not in key
    assert "max-age" in response.headers["Cache-Control"]


def test_oa29_no_dynamic_client_registration(broker: BrokerProcess) -> None:
    assert (
        requests.post(broker.url("/register"), json={"redirect_uris": ["https://x/cb"]}, timeout=10).status_code == 404
    )
    assert "registration_endpoint" not in broker.discovery()


def test_oa30_logout_redirects_only_to_registered_uris(broker: BrokerProcess, app: Client) -> None:
    http = requests.Session()
    query, _ = browser_code(http, broker, app, remember=True)
    id_token = redeem(broker, app, query["code"]).json()["id_token"]
    for target in ("https://evil.test/", "https://app.example/bye?x=1", "https://app.example/bye/"):
        response = http.get(
            broker.url("/logout"),
            params={"id_token_hint": id_token, "post_logout_redirect_uri": target},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 400 and "Location" not in response.headers
    forged = http.get(
        broker.url("/logout"),
        params={"id_token_hint": id_token[:-4] + "AAAA", "post_logout_redirect_uri": "https://app.example/bye"},
        allow_redirects=False,
        timeout=10,
    )
    assert forged.status_code == 400 and "Location" not in forged.headers
    no_client = http.get(
        broker.url("/logout"),
        params={"post_logout_redirect_uri": "https://app.example/bye"},
        allow_redirects=False,
        timeout=10,
    )
    assert no_client.status_code == 400
    ok = http.get(
        broker.url("/logout"),
        params={"id_token_hint": id_token, "state": "s9", "post_logout_redirect_uri": "https://app.example/bye"},
        allow_redirects=False,
        timeout=10,
    )
    assert ok.status_code == 303 and ok.headers["Location"] == "https://app.example/bye?state=s9"
    after = http.get(
        broker.url("/authorize"),
        params={
            "client_id": "app",
            "redirect_uri": app.redirect_uri,
            "response_type": "code",
            "scope": "openid",
            "prompt": "none",
            "code_challenge": pkce_pair()[1],
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert query_of(after.headers["Location"])["error"] == "login_required"


def test_oa30_logout_without_hint_needs_a_csrf_confirmation(broker: BrokerProcess, app: Client) -> None:
    http = requests.Session()
    browser_code(http, broker, app, remember=True)
    page = http.get(broker.url("/logout"), allow_redirects=False, timeout=10)
    assert page.status_code == 200 and "csrf_token" in page.text
    forged = http.post(broker.url("/logout"), data={"csrf_token": "x"}, allow_redirects=False, timeout=10)
    assert forged.status_code == 200 and "csrf_token" in forged.text  # still asking; still logged in
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    done = http.post(broker.url("/logout"), data={"csrf_token": token}, allow_redirects=False, timeout=10)
    assert done.status_code == 200 and "logged out" in done.text


@pytest.mark.parametrize(
    "next_value",
    [
        "//evil.test",
        "/\\evil.test",
        "https:evil.test",
        "/%2F%2Fevil.test",
        "javascript:alert(1)",
        "/%0d%0aLocation:evil",
        "https://evil.test/",
    ],
)
def test_oa31_no_open_redirect_after_login(broker: BrokerProcess, next_value: str) -> None:
    from tests.oidc.flow import login

    http = requests.Session()
    page = http.get(broker.url("/login"), params={"next": next_value}, timeout=10)
    response = login(http, broker, page)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith("//") and "evil" not in location


def test_oa32_no_referrer_and_no_tokens_in_urls(broker: BrokerProcess, app: Client) -> None:
    http = requests.Session()
    query, response = browser_code(http, broker, app, remember=True)
    assert set(query) == {"code", "iss"}
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_oa33_secrets_never_logged(broker: BrokerProcess, app: Client) -> None:
    tokens = full_login(broker, app)
    requests.post(
        broker.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=app.auth,
        timeout=10,
    )
    log = broker.log_text()
    for secret in (app.secret, tokens["access_token"], tokens["refresh_token"], tokens["id_token"], "correct horse"):
        assert secret and secret not in log
    assert "code=" not in log


def test_oa34_access_tokens_short_lived_and_audience_restricted(broker: BrokerProcess, app: Client) -> None:
    at = claims(full_login(broker, app)["access_token"])
    assert at["exp"] - at["iat"] <= OidcSettings().access_token_lifetime_seconds <= 3600
    assert at["aud"] == "app"
