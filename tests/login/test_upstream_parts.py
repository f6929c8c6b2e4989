"""The hand-written parts of the oidc connector, case by case: claims cleaning, discovery judging,
ID-token checks at their boundaries, and the bounded HTTP exchange."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from broker.login.claims import affiliations, clean_email, clean_text, display_name
from broker.login.discovery import DiscoveryError, judge
from broker.login.id_token import IdTokenError, verify_id_token
from broker.login.settings import ConnectorSettings
from broker.login.upstream_http import HttpLimits, UpstreamHttpError, exchange
from broker.trust.config import TrustConfig, TrustedBroker
from broker.trust.jwks import KeyResolver
from broker.trust.keyset import ResolvedKey
from broker.trust.settings import JwksFetchSettings

ISS = "https://idp.example.org"

# --------------------------------------------------------------------------- claims


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Ada Lovelace", "Ada Lovelace"),
        ("Ada\r\nSet-Cookie: x=1", "Ada Set-Cookie: x=1"),
        ("\u202eevil\u202c name\u200b", "evil name"),
        ("tab\there\x00nul\x7fdel", "tab herenuldel"),
        ("  line\u2028sep  ", "line sep"),
        ("<b>bold</b>", "<b>bold</b>"),  # kept as text; pages escape it
        ("x" * 500, "x" * 200),
        (12, ""),
        (None, ""),
        (["a"], ""),
    ],
)
def test_clean_text_drops_controls_and_format_characters_and_caps_length(raw: object, expected: str) -> None:
    assert clean_text(raw) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("a@uni.example", "a@uni.example"),
        ("a@uni.example\r\nBcc: b@x", ""),
        ("a b@uni.example", ""),
        ("a@b@uni.example", ""),
        ("a@" + "x" * 260, ""),
        ("", ""),
        (None, ""),
        ("no-at.example", ""),
    ],
)
def test_clean_email_keeps_only_one_plain_address(raw: object, expected: str) -> None:
    assert clean_email(raw) == expected


def test_display_name_falls_back_to_given_family_then_username() -> None:
    assert display_name({"name": "  ", "given_name": "Ada", "family_name": "Lovelace"}) == "Ada Lovelace"
    assert display_name({"preferred_username": "ada\u202e"}) == "ada"
    assert display_name({}) == ""


def test_affiliations_keep_only_ga4gh_affiliation_values() -> None:
    claims = {
        "eduperson_scoped_affiliation": [
            "faculty@uni.example",
            "student@uni.example",
            "member@uni.example",
            "staff@uni.example",
            "custom.role@uni.example",
            "Faculty@uni.example",
            "member@",
            "@uni.example",
            "member@uni .example",
            "member@uni.example",
            7,
            "member@-uni.example",
        ]
    }
    found = affiliations(claims, "https://uni.example/", 1700000000)
    assert [a["value"] for a in found] == [
        "faculty@uni.example",
        "student@uni.example",
        "member@uni.example",
        "custom.role@uni.example",
    ]
    assert all(a["source"] == "https://uni.example/" and a["asserted"] == 1700000000 for a in found)
    assert [a["value"] for a in affiliations({"eduPersonScopedAffiliation": "member@x.org"}, "s", 1)] == [
        "member@x.org"
    ]
    assert affiliations({"eduperson_scoped_affiliation": {"a": 1}}, "s", 1) == []
    many = {"eduperson_scoped_affiliation": [f"member@u{i}.example" for i in range(50)]}
    assert len(affiliations(many, "s", 1)) == 20


# --------------------------------------------------------------------------- discovery


def connector(issuer: str = ISS, secret: str | None = "s3cret") -> ConnectorSettings:  # noqa: S107 - a test value
    return ConnectorSettings(id="up", kind="oidc", issuer=issuer, client_id="broker", client_secret=secret)


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": ISS,
        "authorization_endpoint": f"{ISS}/authorize",
        "token_endpoint": f"{ISS}/token",
        "userinfo_endpoint": f"{ISS}/userinfo",
        "jwks_uri": f"{ISS}/jwks",
        "authorization_response_iss_parameter_supported": True,
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def test_discovery_document_honest_is_used() -> None:
    meta = judge(document(), connector(), False)
    assert (meta.issuer, meta.token_endpoint, meta.jwks_uri) == (ISS, f"{ISS}/token", f"{ISS}/jwks")
    assert meta.iss_parameter_supported and meta.token_auth_method == "client_secret_basic"
    assert judge(document(userinfo_endpoint=None), connector(), False).userinfo_endpoint is None
    assert not judge(
        document(authorization_response_iss_parameter_supported="true"), connector(), False
    ).iss_parameter_supported
    assert (
        judge(
            document(token_endpoint_auth_methods_supported=["client_secret_post"]), connector(), False
        ).token_auth_method
        == "client_secret_post"
    )
    assert judge(document(), connector(secret=None), False).token_auth_method == "none"
    assert (
        judge(
            document(
                issuer="http://127.0.0.1:8/",
                token_endpoint="http://127.0.0.1:8/t",
                authorization_endpoint="http://127.0.0.1:8/a",
                jwks_uri="http://127.0.0.1:8/k",
                userinfo_endpoint="http://127.0.0.1:8/u",
            ),
            connector("http://127.0.0.1:8/"),
            True,
        ).token_endpoint
        == "http://127.0.0.1:8/t"
    )


@pytest.mark.parametrize(
    "changes,reason",
    [
        ({"issuer": ISS + "/"}, "issuer_mismatch"),
        ({"issuer": "https://IDP.example.org"}, "issuer_mismatch"),
        ({"issuer": None}, "issuer_mismatch"),
        ({"token_endpoint": "https://evil.example/token"}, "foreign_endpoint"),
        ({"token_endpoint": "https://idp.example.org:8443/token"}, "foreign_endpoint"),
        ({"jwks_uri": "https://idp.example.org.evil.example/jwks"}, "foreign_endpoint"),
        ({"authorization_endpoint": "https://evil.example/authorize"}, "foreign_endpoint"),
        ({"userinfo_endpoint": "https://evil.example/userinfo"}, "foreign_endpoint"),
        ({"jwks_uri": "http://idp.example.org/jwks"}, "bad_endpoint"),
        ({"token_endpoint": "https://user@idp.example.org/token"}, "bad_endpoint"),
        ({"token_endpoint": "https://idp.example.org/token#x"}, "bad_endpoint"),
        ({"jwks_uri": None}, "missing_endpoint"),
        ({"token_endpoint": 5}, "missing_endpoint"),
        ({"response_types_supported": ["id_token"]}, "unsupported"),
        ({"code_challenge_methods_supported": ["plain"]}, "unsupported"),
        ({"token_endpoint_auth_methods_supported": ["private_key_jwt"]}, "unsupported"),
    ],
)
def test_rp05_discovery_document_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        judge(document(**changes), connector(), False)
    assert caught.value.reason == reason


def test_rp05_loopback_http_upstream_needs_the_setting() -> None:
    loop = "http://127.0.0.1:8"
    doc = document(
        issuer=loop,
        authorization_endpoint=f"{loop}/a",
        token_endpoint=f"{loop}/t",
        jwks_uri=f"{loop}/k",
        userinfo_endpoint=f"{loop}/u",
    )
    with pytest.raises(DiscoveryError) as caught:
        judge(doc, connector(loop), False)
    assert caught.value.reason == "bad_endpoint"


# --------------------------------------------------------------------------- ID tokens

NOW = 1_800_000_000
LEEWAY = 60


@pytest.fixture(scope="module")
def signing() -> tuple[ec.EllipticCurvePrivateKey, KeyResolver]:
    key = ec.generate_private_key(ec.SECP256R1())
    pinned = MappingProxyType({"k1": ResolvedKey("k1", "ES256", key.public_key())})
    trust = TrustConfig("https://broker.example/", brokers={ISS: TrustedBroker(iss=ISS, jwks_uri=None, pinned=pinned)})
    return key, KeyResolver(trust, JwksFetchSettings())


def id_token(key: ec.EllipticCurvePrivateKey, typ: str | None = "JWT", **changes: Any) -> str:
    claims: dict[str, Any] = {"iss": ISS, "sub": "u1", "aud": "broker", "iat": NOW, "exp": NOW + 300, "nonce": "n-1"}
    claims.update(changes)
    headers: dict[str, Any] = {"kid": "k1"}
    if typ is not None:
        headers["typ"] = typ
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="ES256", headers=headers)


def check(resolver: KeyResolver, token: object, now: int = NOW) -> dict[str, Any]:
    return verify_id_token(
        token,
        issuer=ISS,
        client_id="broker",
        nonce="n-1",
        keys=resolver,
        now=now,
        leeway=LEEWAY,
        max_bytes=65536,
        max_depth=16,
    )


@pytest.mark.parametrize(
    "changes,now",
    [
        ({}, NOW),
        ({"typ": None}, NOW),
        ({"typ": "application/jwt"}, NOW),
        ({"aud": ["broker"]}, NOW),
        ({"aud": ["broker", "other"], "azp": "broker"}, NOW),
        ({"azp": "broker"}, NOW),
        ({}, NOW + 300 + LEEWAY - 1),
        ({"iat": NOW + LEEWAY}, NOW),
        ({"nbf": NOW + LEEWAY}, NOW),
        ({"sub": "s" * 255}, NOW),
    ],
)
def test_rp03_id_token_accepted_at_the_edges(
    signing: tuple[Any, KeyResolver], changes: dict[str, Any], now: int
) -> None:
    key, resolver = signing
    typ = changes.pop("typ", "JWT")
    assert check(resolver, id_token(key, typ, **changes), now)["sub"] in ("u1", "s" * 255)


@pytest.mark.parametrize(
    "changes,now,reason",
    [
        ({}, NOW + 300 + LEEWAY, "expired"),
        ({"iat": NOW + LEEWAY + 1}, NOW, "bad_time"),
        ({"nbf": NOW + LEEWAY + 1}, NOW, "bad_time"),
        ({"exp": NOW}, NOW, "bad_time"),
        ({"exp": True}, NOW, "bad_time"),
        ({"iat": float(NOW)}, NOW, "bad_time"),
        ({"exp": None}, NOW, "bad_time"),
        ({"sub": "s" * 256}, NOW, "bad_sub"),
        ({"sub": ""}, NOW, "bad_sub"),
        ({"sub": 7}, NOW, "bad_sub"),
        ({"aud": "other"}, NOW, "bad_aud"),
        ({"aud": []}, NOW, "bad_aud"),
        ({"aud": ["broker", 3]}, NOW, "bad_aud"),
        ({"aud": None}, NOW, "bad_aud"),
        ({"aud": ["broker", "other"]}, NOW, "bad_azp"),
        ({"azp": "other"}, NOW, "bad_azp"),
        ({"nonce": "n-2"}, NOW, "bad_nonce"),
        ({"nonce": None}, NOW, "bad_nonce"),
        ({"nonce": ["n-1"]}, NOW, "bad_nonce"),
        ({"iss": ISS + "/"}, NOW, "wrong_iss"),
        ({"typ": "at+jwt"}, NOW, "bad_typ"),
        ({"typ": "vnd.ga4gh.passport+jwt"}, NOW, "bad_typ"),
    ],
)
def test_rp03_id_token_refused(
    signing: tuple[Any, KeyResolver], changes: dict[str, Any], now: int, reason: str
) -> None:
    key, resolver = signing
    typ = changes.pop("typ", "JWT")
    with pytest.raises(IdTokenError) as caught:
        check(resolver, id_token(key, typ, **changes), now)
    assert caught.value.reason == reason


def test_rp03_id_token_malformed_or_foreign_signed_is_refused(signing: tuple[Any, KeyResolver]) -> None:
    key, resolver = signing
    good = id_token(key)
    stranger = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "jws_bad_signature": id_token(stranger),
        "jws_malformed": good + ".",
        "jws_too_large": "a" * 70000,
    }
    for reason, token in cases.items():
        with pytest.raises(IdTokenError) as caught:
            check(resolver, token)
        assert caught.value.reason == reason, (reason, caught.value)
    with pytest.raises(IdTokenError):
        check(resolver, None)
    with pytest.raises(IdTokenError) as caught:
        check(resolver, jwt.encode({"iss": ISS}, key, algorithm="ES256", headers={"kid": "k9"}))
    assert caught.value.reason == "key_key_not_found"


# --------------------------------------------------------------------------- bounded HTTP


class _Redirecting(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self) -> None:
        _Redirecting.hits[self.path] = _Redirecting.hits.get(self.path, 0) + 1
        if self.path == "/go":
            self.send_response(302)
            self.send_header("Location", "/target")
            self.end_headers()
        elif self.path == "/slow-headers":
            time.sleep(2)
            self.send_response(200)
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip" if self.path == "/gzip" else "identity")
            self.end_headers()
            self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_rp10_exchange_follows_no_redirect_refuses_compression_and_bounds_time() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    server.daemon_threads = True
    server.block_on_close = False  # do not wait for the handler still sleeping in /slow-headers
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    limits = HttpLimits(timeout_seconds=0.5, max_bytes=1000, allow_http_loopback=True)
    try:
        assert exchange("GET", f"{base}/ok", limits).json_object(16) == {}
        for path, reason in (("/go", "redirect"), ("/gzip", "compressed"), ("/slow-headers", "timeout")):
            with pytest.raises(UpstreamHttpError) as caught:
                exchange("GET", base + path, limits)
            assert caught.value.reason == reason
        assert "/target" not in _Redirecting.hits
        with pytest.raises(UpstreamHttpError) as caught:
            exchange("GET", f"{base}/ok", HttpLimits(timeout_seconds=0.5, max_bytes=1000, allow_http_loopback=False))
        assert caught.value.reason == "bad_url"
        with pytest.raises(UpstreamHttpError) as caught:
            exchange("GET", "http://example.org/x", limits)
        assert caught.value.reason == "bad_url"
    finally:
        server.shutdown()
        server.server_close()
