"""The shipped nginx configuration (examples/nginx) with a real nginx in front of the gateway:
stream through nginx, offload by X-Accel-Redirect, and nginx auth_request on the decision endpoint."""

from __future__ import annotations

import pytest
import requests

from tests.gateway.conftest import AUTH, UPSTREAM_KEY, Stack
from tests.gateway.support import raw_get


def front(stack: Stack, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> requests.Response:
    return requests.request(method, stack.front + path, headers=headers or {}, timeout=10, allow_redirects=False)


def test_stream_mode_through_nginx(stack: Stack) -> None:
    r = front(stack, "/data/ds1/small.bin", AUTH)
    assert r.status_code == 200 and r.content == stack.files.small
    assert r.headers["Cache-Control"] == "private, no-store"
    r = front(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=5-14,100-109"})
    assert r.status_code == 206 and stack.files.small[5:15] in r.content


def test_offload_mode_nginx_serves_the_bytes_after_the_decision(stack: Stack) -> None:
    stack.authorizer.calls.clear()
    r = front(stack, "/data/off1/small.bin", AUTH)
    assert r.status_code == 200 and r.content == stack.files.small
    assert "X-Accel-Redirect" not in r.headers
    assert r.headers["Cache-Control"] == "private, no-store"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert stack.authorizer.calls[-1][1:3] == ("off1", "small.bin")
    assert "nginx" in r.headers.get("Server", "")


def test_offload_ranges_and_names_needing_encoding_are_served_by_nginx(stack: Stack) -> None:
    r = front(stack, "/data/off1/small.bin", {**AUTH, "Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == stack.files.small[100:200]
    assert r.headers["Content-Range"] == "bytes 100-199/100003"
    r = front(stack, "/data/off1/name%20with%20space%20%26%20%C3%BC.bin", AUTH)
    assert r.status_code == 200 and r.content == stack.files.spaced
    r = front(stack, "/data/off1/dir/nested.bin", AUTH, "HEAD")
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(stack.files.nested))


def test_offload_refusals_come_from_the_gateway(stack: Stack) -> None:
    r = front(stack, "/data/off1/small.bin")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer realm=")
    r = front(stack, "/data/off1/small.bin", {"Authorization": "Bearer tok-none"})
    assert r.status_code == 403 and r.json()["error"] == "no_matching_visa"
    r = front(stack, "/data/off1/missing.bin", AUTH)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert front(stack, "/data/off1/link-out", AUTH).status_code == 404


def test_offload_internal_location_is_not_reachable_directly(stack: Stack) -> None:
    for path in ("/_gateway/local/ds1/small.bin", "/_gateway/local/ds2/secret.bin", "/_gateway/archive/ds1/small.bin"):
        r = front(stack, path, AUTH)
        assert r.status_code == 404
        assert stack.files.small[:32] not in r.content and stack.files.secret[:32] not in r.content


def test_px01_traversal_through_nginx_never_escapes(stack: Stack) -> None:
    for target in (
        "/data/off1/..%2f..%2fds2/secret.bin",
        "/data/off1/%2e%2e/ds2/secret.bin",
        "/data/off1/%252e%252e%252fds2%252fsecret.bin",
        "/data/ds1/..%5cds2%5csecret.bin",
        "/data/off1/%c0%ae%c0%ae/ds2/secret.bin",
        "/data/off1//small.bin",
    ):
        resp = raw_get(stack.front_port, target, AUTH)
        assert resp.status in (400, 404), (target, resp.status)
        assert stack.files.secret[:32] not in resp.body


def test_offload_http_store_nginx_fetches_with_our_credential_only(stack: Stack) -> None:
    r = front(stack, "/data/weboff/dir/nested.bin", {**AUTH, "Cookie": "sid=client"})
    assert r.status_code == 200 and r.content == stack.files.nested
    assert r.headers["Cache-Control"] == "private, no-store"
    line = [entry for entry in stack.upstream_log() if "/ds1/dir/nested.bin" in entry][-1]
    assert f"|key={UPSTREAM_KEY}|" in line and "|auth=-|" in line and "|cookie=-|" in line


# ------------------------------------------------------------------ auth_request


def test_auth_request_mode_nginx_serves_after_a_200_decision(stack: Stack) -> None:
    r = front(stack, "/files/ds1/small.bin", AUTH)
    assert r.status_code == 200 and r.content == stack.files.small
    assert r.headers["X-Auth-Subject"] == "alice@example.org"
    assert r.headers["Cache-Control"] == "private, no-store"
    r = front(stack, "/files/ds1/small.bin", {**AUTH, "Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == stack.files.small[:10]


def test_auth_request_mode_401_and_403_reach_the_client(stack: Stack) -> None:
    r = front(stack, "/files/ds1/small.bin")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="ga4gh-broker"'
    assert stack.files.small[:32] not in r.content
    r = front(stack, "/files/ds1/small.bin", {"Authorization": "Bearer tok-none"})
    assert r.status_code == 403 and stack.files.small[:32] not in r.content
    r = front(stack, "/files/ds2/secret.bin", AUTH)
    assert r.status_code == 403 and stack.files.secret[:32] not in r.content


@pytest.mark.parametrize(
    "target",
    [
        "/files/ds1/..%2fds2/secret.bin",
        "/files/ds1/%2e%2e/ds2/secret.bin",
        "/files/ds1/../ds2/secret.bin",
        "/files/ds1/%252e%252e/ds2/secret.bin",
        "/files/ds1//../ds2/secret.bin",
        "/files/ds1/link-out",
    ],
)
def test_px01_auth_request_mode_never_serves_another_dataset(stack: Stack, target: str) -> None:
    resp = raw_get(stack.front_port, target, AUTH)
    assert resp.status in (400, 403, 404), (target, resp.status)
    assert stack.files.secret[:32] not in resp.body


# ------------------------------------------------------------------ decision endpoint, directly


def test_decision_endpoint_nginx_style(stack: Stack) -> None:
    r = requests.get(
        stack.url + "/gateway/decision",
        timeout=5,
        headers={**AUTH, "X-Original-URI": "/files/ds1/dir/nested.bin", "X-Original-Method": "GET"},
    )
    assert r.status_code == 200 and r.content == b""
    assert r.headers["X-Auth-Subject"] == "alice@example.org"
    assert r.headers["X-Auth-Dataset"] == "ds1" and r.headers["X-Auth-Object"] == "dir/nested.bin"
    assert r.headers["X-Auth-Expires"] == "2000000000" and r.headers["Cache-Control"] == "no-store"


def test_decision_endpoint_envoy_ext_authz_style(stack: Stack) -> None:
    r = requests.head(stack.url + "/gateway/decision/files/ds1/small.bin", headers=AUTH, timeout=5)
    assert r.status_code == 200 and r.headers["X-Auth-Object"] == "small.bin"
    r = requests.get(stack.url + "/gateway/decision/files/ds1/small.bin", timeout=5)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers


@pytest.mark.parametrize(
    "headers,status,reason",
    [
        ({"X-Original-URI": "/files/ds1/a"}, 401, "missing_token"),
        ({**AUTH, "X-Original-URI": "/files/ds2/a"}, 403, "no_matching_visa"),
        ({**AUTH, "X-Original-URI": "/files/ds1/%2e%2e/ds2/a"}, 403, "dot_segment"),
        ({**AUTH, "X-Original-URI": "/elsewhere/ds1/a"}, 403, "invalid_path"),
        ({**AUTH, "X-Original-URI": "/files/ds1/a", "X-Original-Method": "PUT"}, 403, "method_not_allowed"),
        ({"Authorization": "Bearer explode", "X-Original-URI": "/files/ds1/a"}, 503, "authorizer_failed"),
        ({**AUTH, "X-Original-URI": "/files/ds1/a?access_token=x"}, 403, "invalid_request"),
    ],
)
def test_decision_endpoint_refusals(stack: Stack, headers: dict[str, str], status: int, reason: str) -> None:
    r = requests.get(stack.url + "/gateway/decision", headers=headers, timeout=5)
    assert r.status_code == status and r.headers["X-Auth-Reason"] == reason
    assert "X-Auth-Subject" not in r.headers


def test_decision_identity_headers_are_header_safe(stack: Stack) -> None:
    r = requests.get(
        stack.url + "/gateway/decision", timeout=5, headers={**AUTH, "X-Original-URI": "/files/ds1/%C3%BC%20x%0A.bin"}
    )
    assert r.status_code == 403  # a newline in a name is refused before anything else
    r = requests.get(
        stack.url + "/gateway/decision", timeout=5, headers={**AUTH, "X-Original-URI": "/files/ds1/%C3%BC%20x.bin"}
    )
    assert r.status_code == 200 and r.headers["X-Auth-Object"] == "%C3%BC x.bin"
