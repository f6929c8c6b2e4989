"""The hardened JWKS fetcher against real servers on loopback (THREAT-MODEL JWT-08)."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest
import requests
import trustme

from broker.trust.fetch import FetchError, check_url, fetch_jwks, is_loopback_host, new_session
from broker.trust.settings import JwksFetchSettings
from tests.support.jwks_server import JwksServer, Route, TestKey
from tests.support.settings import replace

JSON = {"Content-Type": "application/json"}


def test_https_fetch_with_injected_ca(server: JwksServer, ec1: TestKey, rsa1: TestKey) -> None:
    server.serve_keys(ec1, rsa1)
    result = fetch_jwks(server.url(), JwksFetchSettings(), server.session())
    assert [(k.kid, k.alg) for k in result.keyset.keys] == [("ec-1", "ES256"), ("rsa-1", "RS256")]
    assert result.keyset.keys[0].key.public_numbers() == ec1.public.public_numbers()
    assert server.hits("/jwks.json") == 1


def test_request_asks_for_json_and_no_compression(server: JwksServer, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    fetch_jwks(server.url(), JwksFetchSettings(), server.session())
    assert server.last_headers["Accept-Encoding"] == "identity"
    assert "application/jwk-set+json" in server.last_headers["Accept"]
    assert "Authorization" not in server.last_headers and "Cookie" not in server.last_headers


def test_default_session_keeps_no_cookies_and_ignores_environment(
    server: JwksServer, ec1: TestKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.serve(
        "/jwks.json",
        Route(
            headers={**JSON, "Set-Cookie": "track=1; Path=/"}, body=json.dumps({"keys": [ec1.public_jwk()]}).encode()
        ),
    )
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # would break the fetch if honoured
    session = new_session()
    session.verify = server.ca_path
    fetch_jwks(server.url(), JwksFetchSettings(), session)
    fetch_jwks(server.url(), JwksFetchSettings(), session)
    assert "Cookie" not in server.last_headers and len(session.cookies) == 0


def test_jwt08_certificate_not_trusted_fails(server: JwksServer, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    with pytest.raises(FetchError, match="TLS"):
        fetch_jwks(server.url(), JwksFetchSettings(), None)  # default CA store: our test CA is unknown
    assert server.hits() == 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_jwt08_redirect_not_followed(server: JwksServer, attacker: JwksServer, ec1: TestKey, status: int) -> None:
    attacker.serve_keys(ec1)
    server.redirect("/jwks.json", attacker.url(), status=status)
    with pytest.raises(FetchError, match=f"HTTP {status} redirect"):
        fetch_jwks(server.url(), JwksFetchSettings(), server.session())
    assert server.hits("/jwks.json") == 1
    assert attacker.hits() == 0 and attacker.connections == 0


def test_jwt08_redirect_to_internal_plain_http_not_followed(
    server: JwksServer, http_server: JwksServer, ec1: TestKey
) -> None:
    http_server.serve_keys(ec1)
    server.redirect("/jwks.json", http_server.url())
    settings = JwksFetchSettings(allow_http_loopback=True)
    with pytest.raises(FetchError, match="redirect"):
        fetch_jwks(server.url(), settings, server.session())
    assert http_server.connections == 0


def test_jwt08_declared_oversized_body_refused_before_reading(server: JwksServer) -> None:
    total = 64 * 1024 * 1024
    server.serve(
        "/jwks.json",
        Route(
            headers={**JSON, "Content-Length": str(total)}, stream=lambda: (b" " * 65536 for _ in range(total // 65536))
        ),
    )
    with pytest.raises(FetchError, match="exceeds the limit of 65536"):
        fetch_jwks(server.url(), JwksFetchSettings(), server.session())
    time.sleep(0.2)
    assert server.bytes_sent("/jwks.json") < total // 4


def test_jwt08_streamed_oversized_body_cut_off(server: JwksServer) -> None:
    total = 64 * 1024 * 1024  # no Content-Length: only the streaming cap can stop it
    server.serve(
        "/jwks.json",
        Route(headers=JSON, content_length=False, stream=lambda: (b" " * 65536 for _ in range(total // 65536))),
    )
    with pytest.raises(FetchError, match="body exceeds the limit of 65536 bytes"):
        fetch_jwks(server.url(), JwksFetchSettings(), server.session())
    time.sleep(0.2)
    assert server.bytes_sent("/jwks.json") < total // 4  # we hung up; the server could not push it all


@pytest.mark.parametrize("declared", [True, False])
def test_body_size_boundary(server: JwksServer, ec1: TestKey, declared: bool) -> None:
    doc = json.dumps({"keys": [ec1.public_jwk()]}).encode()
    limit = 4096
    settings = JwksFetchSettings(max_bytes=limit)
    server.serve("/jwks.json", Route(headers=JSON, content_length=declared, body=doc + b" " * (limit - len(doc))))
    assert len(fetch_jwks(server.url(), settings, server.session()).keyset.keys) == 1
    server.serve("/jwks.json", Route(headers=JSON, content_length=declared, body=doc + b" " * (limit + 1 - len(doc))))
    with pytest.raises(FetchError, match="exceeds the limit"):
        fetch_jwks(server.url(), settings, server.session())


def test_jwt08_slow_server_times_out(server: JwksServer, ec1: TestKey) -> None:
    server.serve("/jwks.json", Route(headers=JSON, body=b'{"keys": []}', delay=3.0))
    settings = JwksFetchSettings(connect_timeout_seconds=0.3, read_timeout_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(FetchError, match="read timed out"):
        fetch_jwks(server.url(), settings, server.session())
    assert time.monotonic() - started < 2.0


def test_jwt08_slow_drip_body_cut_at_deadline(server: JwksServer) -> None:
    # Each byte arrives well within the read timeout, so only the whole-body deadline stops it.
    server.serve("/jwks.json", Route(headers=JSON, body=b'{"keys": []' + b" " * 500 + b"}", drip=0.05))
    settings = JwksFetchSettings(connect_timeout_seconds=0.2, read_timeout_seconds=0.4)
    started = time.monotonic()
    with pytest.raises(FetchError, match="read deadline passed"):
        fetch_jwks(server.url(), settings, server.session())
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/plain",
        "application/javascript",
        "application/json-patch+json",
        "application/jsonx",
        "application/jwk+json",
        "",
        "application/octet-stream",
    ],
)
def test_jwt08_wrong_content_type_refused(server: JwksServer, ec1: TestKey, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    server.serve("/jwks.json", Route(headers=headers, body=json.dumps({"keys": [ec1.public_jwk()]}).encode()))
    with pytest.raises(FetchError, match="Content-Type"):
        fetch_jwks(server.url(), JwksFetchSettings(), server.session())


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/jwk-set+json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ],
)
def test_json_content_types_accepted(server: JwksServer, ec1: TestKey, content_type: str) -> None:
    server.serve_jwks({"keys": [ec1.public_jwk()]}, content_type=content_type)
    assert len(fetch_jwks(server.url(), JwksFetchSettings(), server.session()).keyset.keys) == 1


def test_compressed_body_refused(server: JwksServer, ec1: TestKey) -> None:
    body = gzip.compress(json.dumps({"keys": [ec1.public_jwk()]}).encode())
    server.serve("/jwks.json", Route(headers={**JSON, "Content-Encoding": "gzip"}, body=body))
    with pytest.raises(FetchError, match="Content-Encoding"):
        fetch_jwks(server.url(), JwksFetchSettings(), server.session())


def test_jwt08_too_many_keys_refused(server: JwksServer, ec1: TestKey) -> None:
    settings = JwksFetchSettings(max_keys=3)
    server.serve_jwks({"keys": [ec1.public_jwk(kid=f"k{i}") for i in range(3)]})
    assert len(fetch_jwks(server.url(), settings, server.session()).keyset.keys) == 3
    server.serve_jwks({"keys": [ec1.public_jwk(kid=f"k{i}") for i in range(4)]})
    with pytest.raises(FetchError, match="4 keys, more than the limit of 3"):
        fetch_jwks(server.url(), settings, server.session())


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{}",
        b'{"keys": {}}',
        b'{"keys": "x"}',
        b'"keys"',
        b"null",
        b"<html></html>",
        b"",
        b'{"keys": [], "keys": [{"kty": "EC"}]}',  # duplicate member names
        b'{"keys": [NaN]}',
        b"[" * 100_000,
        b'\xff\xfe{"keys": []}',
        b'\xef\xbb\xbf{"keys": []}',
    ],
)
def test_jwt08_not_a_jwks_refused(server: JwksServer, body: bytes) -> None:
    server.serve("/jwks.json", Route(headers=JSON, body=body))
    settings = JwksFetchSettings(max_bytes=200_000)
    with pytest.raises(FetchError):
        fetch_jwks(server.url(), settings, server.session())


def test_invalid_members_ignored_one_by_one(server: JwksServer, ec1: TestKey, ec2: TestKey, rsa1: TestKey) -> None:
    server.serve_jwks(
        {
            "keys": [
                "not an object",
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                ec1.public_jwk(),
                {**ec2.public_jwk(), "d": ec2.private_jwk()["d"]},
                {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "junk"},
                rsa1.public_jwk(use="enc"),
                rsa1.public_jwk(kid="rsa-ok"),
            ]
        }
    )
    keyset = fetch_jwks(server.url(), JwksFetchSettings(), server.session()).keyset
    assert [k.kid for k in keyset.keys] == ["ec-1", "rsa-ok"]
    assert len(keyset.ignored) == 5
    assert all(ec2.private_jwk()["d"] not in why for why in keyset.ignored)  # never quotes key material


@pytest.mark.parametrize("status", [404, 500, 503, 204])
def test_error_status_is_failure(server: JwksServer, status: int) -> None:
    server.serve("/jwks.json", Route(status=status, headers=JSON, body=b'{"keys": []}'))
    with pytest.raises(FetchError, match=f"HTTP {status}"):
        fetch_jwks(server.url(), JwksFetchSettings(), server.session())


def test_connection_refused_is_failure(server: JwksServer, ca: trustme.CA, tmp_path: Path) -> None:
    url = server.url()
    server.stop()
    session = requests.Session()
    session.verify = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(session.verify)
    with pytest.raises(FetchError, match="connection failed"):
        fetch_jwks(url, JwksFetchSettings(connect_timeout_seconds=0.5), session)


def test_jwt08_plain_http_loopback_only_when_allowed(http_server: JwksServer, ec1: TestKey) -> None:
    http_server.serve_keys(ec1)
    with pytest.raises(FetchError, match="allow_http_loopback"):
        fetch_jwks(http_server.url(), JwksFetchSettings(), http_server.session())
    assert http_server.connections == 0
    allowed = JwksFetchSettings(allow_http_loopback=True)
    assert len(fetch_jwks(http_server.url(), allowed, http_server.session()).keyset.keys) == 1
    assert http_server.hits("/jwks.json") == 1


def test_plain_http_on_ipv6_loopback(ec1: TestKey) -> None:
    with JwksServer(host="::1") as v6:
        v6.serve_keys(ec1)
        assert v6.url().startswith("http://[::1]:")
        result = fetch_jwks(v6.url(), JwksFetchSettings(allow_http_loopback=True), v6.session())
        assert result.keyset.keys[0].kid == "ec-1"


def test_https_on_localhost_name(server: JwksServer, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    url = f"https://localhost:{server.port}/jwks.json"
    assert fetch_jwks(url, JwksFetchSettings(), server.session()).keyset.keys[0].kid == "ec-1"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/jwks.json",  # http, not loopback
        "http://10.0.0.1/jwks.json",
        "http://169.254.169.254/latest",
        "http://127.1/jwks.json",  # not a loopback literal by the strict parser: refused
        "http://2130706433/jwks.json",
        "http://localhost.example.org/jwks.json",
        "file:///etc/passwd",
        "ftp://example.org/jwks.json",
        "data:application/json,{}",
        "gopher://127.0.0.1:6379/_INFO",
        "https://good.example@evil.example/jwks.json",
        "https://evil.example\\@good.example/jwks.json",
        "https://good.example/jwks.json#@evil.example",
        " https://good.example/jwks.json",
        "https://good.example/jwks.json\n",
        "https://good.example/jwks\x00.json",
        "https://tru\u0455ted.example/jwks.json",
        "https://trusted\u3002example/jwks.json",
        "https:///jwks.json",
        "//good.example/jwks.json",
        "",
        "https://good.example/" + "a" * 3000,
    ],
)
def test_jwt08_check_url_refuses(url: str) -> None:
    with pytest.raises(FetchError):
        check_url(url, allow_http_loopback=True)


@pytest.mark.parametrize(
    "url,allow",
    [
        ("https://good.example/jwks.json", False),
        ("https://good.example:8443/oidc/jwk", False),
        ("https://127.0.0.1:9/jwks.json", False),
        ("http://127.0.0.1:9/jwks.json", True),
        ("http://127.8.9.10/jwks.json", True),
        ("http://[::1]:9/jwks.json", True),
        ("http://localhost:9/jwks.json", True),
    ],
)
def test_check_url_accepts(url: str, allow: bool) -> None:
    assert check_url(url, allow_http_loopback=allow) == url


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("127.255.0.3") and is_loopback_host("[::1]")
    assert is_loopback_host("LOCALHOST")
    assert not is_loopback_host("::ffff:127.0.0.1")
    assert not is_loopback_host("10.0.0.1")
    assert not is_loopback_host("localhost.example")
    assert not is_loopback_host("127.1")


def test_settings_are_what_bounds_use(server: JwksServer, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    tight = replace(JwksFetchSettings(), max_bytes=10)
    with pytest.raises(FetchError, match="exceeds the limit of 10"):
        fetch_jwks(server.url(), tight, server.session())
