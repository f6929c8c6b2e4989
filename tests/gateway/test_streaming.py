"""The streaming route over real HTTP, directory store: authorisation order, HTTP correctness."""

from __future__ import annotations

import email.parser
import email.policy
import time

import pytest
import requests

from broker.gateway.authorize import AccessDecision
from tests.gateway.conftest import AUTH, Stack
from tests.gateway.support import ServerThread, TableAuthorizer, build_app, raw_get


def get(stack: Stack, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> requests.Response:
    return requests.request(method, stack.url + path, headers=headers or {}, timeout=10, allow_redirects=False)


def test_full_download_streams_exact_bytes_with_validators(stack: Stack) -> None:
    r = get(stack, "/data/ds1/small.bin", AUTH)
    assert r.status_code == 200
    assert r.content == stack.files.small
    assert r.headers["Content-Length"] == str(len(stack.files.small))
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"].startswith('"') and r.headers["Last-Modified"].endswith("GMT")


def test_px16_protected_data_is_private_no_store(stack: Stack) -> None:
    for method in ("GET", "HEAD"):
        r = get(stack, "/data/ds1/small.bin", AUTH, method)
        assert r.headers["Cache-Control"] == "private, no-store"
    # refusals are not cacheable either
    assert get(stack, "/data/ds1/small.bin").headers["Cache-Control"] == "no-store"


def test_head_has_length_and_no_body(stack: Stack) -> None:
    resp = raw_get(stack.gateway.port, "/data/ds1/small.bin", AUTH, method="HEAD")
    assert resp.status == 200
    assert resp.header("Content-Length") == str(len(stack.files.small))
    assert resp.body == b""


def test_nested_and_encoded_names_are_served(stack: Stack) -> None:
    assert get(stack, "/data/ds1/dir/nested.bin", AUTH).content == stack.files.nested
    r = get(stack, "/data/ds1/name%20with%20space%20%26%20%C3%BC.bin", AUTH)
    assert r.status_code == 200 and r.content == stack.files.spaced


def test_empty_file_is_served_and_ranges_on_it_are_unsatisfiable(stack: Stack) -> None:
    r = get(stack, "/data/ds1/empty.bin", AUTH)
    assert r.status_code == 200 and r.content == b"" and r.headers["Content-Length"] == "0"
    r = get(stack, "/data/ds1/empty.bin", {**AUTH, "Range": "bytes=0-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */0"


# ------------------------------------------------------------------ 401 / 403 / 404 / 503


def test_missing_token_is_401_with_bare_bearer_challenge(stack: Stack) -> None:
    r = get(stack, "/data/ds1/small.bin")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="ga4gh-broker"'
    assert r.json()["error"] == "missing_token"


def test_other_auth_scheme_counts_as_no_token(stack: Stack) -> None:
    r = get(stack, "/data/ds1/small.bin", {"Authorization": "Basic YWxpY2U6cHc="})
    assert r.status_code == 401 and "error=" not in r.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "value", ["Bearer not-a-known-token", "Bearer bad token with spaces", "bearer  \t", "Bearer tok-ds1\x7f"]
)
def test_bad_token_is_401_invalid_token(stack: Stack, value: str) -> None:
    resp = raw_get(stack.gateway.port, "/data/ds1/small.bin", {"Authorization": value})
    assert resp.status == 401
    assert resp.header("WWW-Authenticate") == 'Bearer realm="ga4gh-broker", error="invalid_token"'


def test_deny_is_403_with_reason_and_required_visas(stack: Stack) -> None:
    r = get(stack, "/data/ds1/small.bin", {"Authorization": "Bearer tok-none"})
    assert r.status_code == 403
    body = r.json()
    assert body["error"] == "no_matching_visa"
    assert body["required"]["dataset"] == "ds1"
    assert b"\x00" not in r.content and stack.files.small[:16] not in r.content


def test_required_visas_hidden_when_settings_say_so(stack: Stack, tmp_path) -> None:
    from tests.support.settings import replace

    app = build_app(replace(stack.settings, expose_required_visas=False), stack.authorizer, tmp_path)
    with ServerThread(app) as server:
        r = requests.get(server.url + "/data/ds1/small.bin", headers={"Authorization": "Bearer tok-none"}, timeout=5)
    assert r.status_code == 403 and "required" not in r.json()


def test_px17_no_existence_oracle_without_access(stack: Stack) -> None:
    """Existing and missing objects (and datasets) look the same to a caller without access."""
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer tok-none"}, 403),
        ({"Authorization": "Bearer tok-ds2"}, 403),
    ):
        answers = [
            get(stack, path, headers)
            for path in ("/data/ds1/small.bin", "/data/ds1/no-such.bin", "/data/ds1/dir/none/x.bin")
        ]
        assert {a.status_code for a in answers} == {status}
        assert len({a.content for a in answers}) == 1
    # only after authorisation does a missing object become a 404
    assert get(stack, "/data/ds1/no-such.bin", AUTH).status_code == 404


def test_unknown_dataset_is_decided_before_being_looked_up(stack: Stack) -> None:
    assert get(stack, "/data/nosuchds/small.bin", AUTH).status_code == 403
    assert get(stack, "/data/nosuchds/small.bin").status_code == 401


def test_authorizer_exception_fails_closed_with_503(stack: Stack) -> None:
    r = get(stack, "/data/ds1/small.bin", {"Authorization": "Bearer explode"})
    assert r.status_code == 503
    assert r.json()["error"] == "authorizer_failed" and r.headers["Retry-After"]
    assert stack.files.small[:16] not in r.content


def test_authorisation_uses_the_canonical_key(stack: Stack) -> None:
    stack.authorizer.calls.clear()
    get(stack, "/data/ds1/dir/nested%2Ebin", AUTH)
    assert stack.authorizer.calls[-1][1:3] == ("ds1", "dir/nested.bin")


def test_symlink_out_of_the_dataset_folder_is_not_followed(stack: Stack) -> None:
    assert get(stack, "/data/ds1/link-out", AUTH).status_code == 404
    assert get(stack, "/data/ds1/link-etc", AUTH).status_code == 404
    r = get(stack, "/data/ds1/link-dir/secret.bin", AUTH)
    assert r.status_code == 404 and stack.files.secret[:16] not in r.content


def test_no_symlink_below_a_dataset_folder_is_followed(stack: Stack) -> None:
    """Like nginx's disable_symlinks on: even one pointing inside the dataset is refused."""
    assert get(stack, "/data/ds1/link-in", AUTH).status_code == 404


def test_a_fifo_in_the_store_is_404_not_a_hang(stack: Stack) -> None:
    started = time.monotonic()
    assert get(stack, "/data/ds1/fifo", AUTH).status_code == 404
    assert time.monotonic() - started < 5


def test_directory_is_not_an_object(stack: Stack) -> None:
    assert get(stack, "/data/ds1/dir", AUTH).status_code == 404


# ------------------------------------------------------------------ ranges


def test_single_range_is_206_with_exact_content_range(stack: Stack) -> None:
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == stack.files.small[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(stack.files.small)}"
    assert r.headers["Content-Length"] == "10"


def test_suffix_and_open_ranges(stack: Stack) -> None:
    size = len(stack.files.small)
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=-500"})
    assert r.status_code == 206 and r.content == stack.files.small[-500:]
    assert r.headers["Content-Range"] == f"bytes {size - 500}-{size - 1}/{size}"
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=99000-"})
    assert r.content == stack.files.small[99000:]
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=-999999999"})
    assert r.status_code == 206 and r.content == stack.files.small


def parse_multipart(response: requests.Response) -> list[tuple[str, bytes]]:
    raw = b"Content-Type: " + response.headers["Content-Type"].encode() + b"\r\n\r\n" + response.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    assert message.is_multipart()
    return [(part["Content-Range"], part.get_payload(decode=True)) for part in message.iter_parts()]


def test_multiple_ranges_are_multipart_byteranges_in_request_order(stack: Stack) -> None:
    size = len(stack.files.small)
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=500-599, 0-9,-5"})
    assert r.status_code == 206
    assert r.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert int(r.headers["Content-Length"]) == len(r.content)
    parts = parse_multipart(r)
    assert parts == [
        (f"bytes 500-599/{size}", stack.files.small[500:600]),
        (f"bytes 0-9/{size}", stack.files.small[0:10]),
        (f"bytes {size - 5}-{size - 1}/{size}", stack.files.small[-5:]),
    ]


def test_boundary_is_random_per_response(stack: Stack) -> None:
    headers = {**AUTH, "Range": "bytes=0-0,5-5"}
    assert (
        get(stack, "/data/ds1/small.bin", headers).headers["Content-Type"]
        != get(stack, "/data/ds1/small.bin", headers).headers["Content-Type"]
    )


def test_px09_overlapping_ranges_are_coalesced_never_amplified(stack: Stack) -> None:
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=0-,0-,0-,0-,0-,0-,0-,0-"})
    assert r.status_code == 206 and r.content == stack.files.small
    assert "multipart" not in r.headers["Content-Type"]
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=0-99,50-149,1000-1009"})
    assert [p[0].split()[1] for p in parse_multipart(r)] == [
        f"0-149/{len(stack.files.small)}",
        f"1000-1009/{len(stack.files.small)}",
    ]


@pytest.mark.parametrize(
    "value",
    [
        ",".join(f"{i}-{i}" for i in range(0, 2000, 2)),  # Apache Killer shape: 1000 tiny ranges
        ",".join(["0-"] * 50),
        ",".join(f"{i}-{i}" for i in range(100, 0, -3)),  # many small descending ranges
        "bytes=" + "0" * 5000 + "-1",  # oversize header
    ],
)
def test_px09_too_many_or_oversized_ranges_are_refused_416_fast(stack: Stack, value: str) -> None:
    header = value if value.startswith("bytes=") else "bytes=" + value
    started = time.monotonic()
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": header})
    assert time.monotonic() - started < 2
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(stack.files.small)}"


@pytest.mark.parametrize(
    "value,status",
    [
        ("bytes=-0", 416),
        ("bytes=5-3", 416),
        ("bytes=10000000000-", 416),
        ("bytes=abc", 416),
        ("bytes=", 416),
        ("bytes=1-2-3", 416),
        ("items=0-5", 200),
        ("0-5", 200),
        ("bytes=99999999999999999999-", 416),
    ],
)
def test_px10_range_edge_cases(stack: Stack, value: str, status: int) -> None:
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": value})
    assert r.status_code == status
    if status == 416:
        assert r.headers["Content-Range"] == f"bytes */{len(stack.files.small)}"
        assert stack.files.small[:16] not in r.content
    else:
        assert r.content == stack.files.small


def test_px10_range_on_head_is_ignored(stack: Stack) -> None:
    resp = raw_get(stack.gateway.port, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=0-9"}, method="HEAD")
    assert resp.status == 200 and resp.header("Content-Length") == str(len(stack.files.small))


def test_px10_range_is_not_evaluated_before_authorisation(stack: Stack) -> None:
    r = get(stack, "/data/ds1/small.bin", {"Range": "bytes=5-3"})
    assert r.status_code == 401
    r = get(stack, "/data/ds1/small.bin", {"Authorization": "Bearer tok-none", "Range": "bytes=0-9,0-"})
    assert r.status_code == 403


def test_if_range_with_current_etag_gives_206_and_stale_gives_200(stack: Stack) -> None:
    etag = get(stack, "/data/ds1/small.bin", AUTH, "HEAD").headers["ETag"]
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=0-9", "If-Range": etag})
    assert r.status_code == 206 and r.content == stack.files.small[:10]
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == stack.files.small
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=0-9", "If-Range": "W/" + etag})
    assert r.status_code == 200


def test_if_range_with_last_modified_date(stack: Stack) -> None:
    lm = get(stack, "/data/ds1/small.bin", AUTH, "HEAD").headers["Last-Modified"]
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=0-9", "If-Range": lm})
    assert r.status_code == 206
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Range": "bytes=0-9", "If-Range": "Thu, 01 Jan 1998 00:00:00 GMT"})
    assert r.status_code == 200


def test_if_none_match_gives_304_without_body(stack: Stack) -> None:
    etag = get(stack, "/data/ds1/small.bin", AUTH, "HEAD").headers["ETag"]
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == etag


# ------------------------------------------------------------------ methods, query tokens, CORS


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "POST", "TRACE", "PROPFIND"])
def test_px22_other_methods_are_405_with_allow_and_never_authorised(stack: Stack, method: str) -> None:
    stack.authorizer.calls.clear()
    resp = raw_get(stack.gateway.port, "/data/ds1/small.bin", AUTH, method=method)
    assert resp.status == 405
    assert set((resp.header("Allow") or "").replace(" ", "").split(",")) >= {"GET", "HEAD"}
    assert "PUT" not in (resp.header("Allow") or "")
    assert stack.authorizer.calls == []


@pytest.mark.parametrize("query", ["access_token=tok-ds1", "ACCESS_TOKEN=tok-ds1", "x=1&access_token=tok-ds1"])
def test_px18_token_in_query_string_is_refused(stack: Stack, query: str) -> None:
    r = get(stack, f"/data/ds1/small.bin?{query}")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "query", ["upstream=http://169.254.169.254/", "url=http://127.0.0.1:6379/", "x", "format=BAM&referenceName=chr1"]
)
def test_px05_query_cannot_choose_anything(stack: Stack, query: str) -> None:
    """Other parameters than a signed URL's are ignored: the bearer request reads the same object."""
    r = get(stack, f"/data/ds1/small.bin?{query}", AUTH)
    assert r.status_code == 200 and r.content == stack.files.small
    r = get(stack, f"/data/ds2/secret.bin?{query}", AUTH)
    assert r.status_code == 403 and stack.files.secret[:16] not in r.content
    r = get(stack, f"/data/ds1/small.bin?{query}")
    assert r.status_code == 401 and r.json()["error"] == "missing_token"


def test_px19_cors_preflight_allows_only_listed_origin_and_headers(stack: Stack) -> None:
    ok = get(
        stack,
        "/data/ds1/small.bin",
        {
            "Origin": "https://viewer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, range",
        },
        "OPTIONS",
    )
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://viewer.example"
    assert ok.headers["Access-Control-Allow-Headers"] == "Authorization, Range, GA4GH-Purpose"
    assert "Access-Control-Allow-Credentials" not in ok.headers
    for headers in (
        {"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"},
        {"Origin": "https://viewer.example", "Access-Control-Request-Method": "PUT"},
        {
            "Origin": "https://viewer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-custom",
        },
    ):
        bad = get(stack, "/data/ds1/small.bin", headers, "OPTIONS")
        assert bad.status_code == 403 and "Access-Control-Allow-Origin" not in bad.headers
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Origin": "https://viewer.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://viewer.example"
    assert "Content-Range" in r.headers["Access-Control-Expose-Headers"]
    r = get(stack, "/data/ds1/small.bin", {**AUTH, "Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in r.headers and "Origin" in r.headers["Vary"]


def test_px21_expired_grant_denies_the_next_range_request(stack: Stack, tmp_path) -> None:
    now = [1_000.0]
    authorizer = TableAuthorizer(
        {"short": stack.authorizer.tokens["tok-ds1"].__class__("dora", frozenset({"ds1"}), expires_at=1_030)},
        clock=lambda: now[0],
    )
    with ServerThread(build_app(stack.settings, authorizer, tmp_path)) as server:
        first = requests.get(
            server.url + "/data/ds1/small.bin",
            timeout=5,
            headers={"Authorization": "Bearer short", "Range": "bytes=0-99"},
        )
        now[0] = 1_031.0
        second = requests.get(
            server.url + "/data/ds1/small.bin",
            timeout=5,
            headers={"Authorization": "Bearer short", "Range": "bytes=100-199"},
        )
    assert first.status_code == 206 and second.status_code == 401


@pytest.mark.parametrize(
    "decision",
    [
        None,
        "allow",
        AccessDecision(True, 403, "odd", "allow with a refusal status"),
        AccessDecision(False, 200, "odd", "deny with an OK status"),
        AccessDecision(False, 404, "odd", "deny with a status the gateway does not give"),
    ],
)
def test_a_malformed_decision_fails_closed(stack: Stack, tmp_path, decision: object) -> None:
    class Broken:
        def authorize(self, *args: object, **kwargs: object) -> object:
            return decision

    with ServerThread(build_app(stack.settings, Broken(), tmp_path)) as server:
        r = requests.get(server.url + "/data/ds1/small.bin", headers=AUTH, timeout=5)
    assert r.status_code == 503 and r.json()["error"] == "authorizer_failed"
    assert stack.files.small[:16] not in r.content
