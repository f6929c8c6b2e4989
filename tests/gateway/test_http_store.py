"""The `http` store: a real nginx upstream, and a raw-socket recording upstream for what a
well-behaved server never does (THREAT-MODEL PX-03, PX-04, PX-06, PX-08, PX-10, PX-13..PX-15)."""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
import requests

from broker.gateway.settings import DatasetSettings, DataStoreSettings
from tests.gateway.conftest import AUTH, UPSTREAM_KEY, Stack
from tests.gateway.support import (
    Recorded,
    RecordingUpstream,
    ServerThread,
    build_app,
    raw_exchange,
    raw_get,
    respond,
)
from tests.support.settings import replace


def through(stack: Stack, tmp_path: Path, upstream: RecordingUpstream, **store: object) -> ServerThread:
    """A gateway whose dataset `rec` lives on the recording upstream under /ds1/."""
    cfg = DataStoreSettings(kind="http", base_url=upstream.url, headers={"X-Api-Key": UPSTREAM_KEY}, **store)  # type: ignore[arg-type]
    settings = replace(
        stack.settings,
        stores={**stack.settings.stores, "rec": cfg},
        datasets={**stack.settings.datasets, "rec": DatasetSettings(store="rec", prefix="ds1")},
    )
    authorizer = replace(stack.authorizer, tokens={**stack.authorizer.tokens})
    authorizer.tokens["tok-ds1"] = replace(
        authorizer.tokens["tok-ds1"], datasets=authorizer.tokens["tok-ds1"].datasets | {"rec"}
    )
    return ServerThread(build_app(settings, authorizer, tmp_path))


# ------------------------------------------------------------------ real nginx upstream


def test_http_store_streams_from_nginx_with_validators(stack: Stack) -> None:
    r = requests.get(stack.url + "/data/web1/small.bin", headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.content == stack.files.small
    assert r.headers["ETag"] and r.headers["Last-Modified"] and r.headers["Content-Length"] == "100003"
    assert r.headers["Cache-Control"] == "private, no-store"
    assert r.headers["Content-Type"] == "application/octet-stream"
    head = requests.head(stack.url + "/data/web1/small.bin", headers=AUTH, timeout=10)
    assert head.status_code == 200 and head.headers["ETag"] == r.headers["ETag"]


def test_http_store_relays_multipart_ranges_and_416(stack: Stack) -> None:
    r = requests.get(stack.url + "/data/web1/small.bin", headers={**AUTH, "Range": "bytes=0-9,20-29"}, timeout=10)
    assert r.status_code == 206 and r.headers["Content-Type"].startswith("multipart/byteranges")
    assert stack.files.small[0:10] in r.content and stack.files.small[20:30] in r.content
    r = requests.get(stack.url + "/data/web1/small.bin", headers={**AUTH, "Range": "bytes=200000-"}, timeout=10)
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */100003"
    r = requests.get(stack.url + "/data/web1/small.bin", headers={**AUTH, "Range": "bytes=9-3"}, timeout=10)
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */100003"


def test_http_store_if_range_and_304_pass_through(stack: Stack) -> None:
    etag = requests.head(stack.url + "/data/web1/small.bin", headers=AUTH, timeout=10).headers["ETag"]
    r = requests.get(
        stack.url + "/data/web1/small.bin", headers={**AUTH, "Range": "bytes=0-3", "If-Range": etag}, timeout=10
    )
    assert r.status_code == 206 and r.content == stack.files.small[:4]
    r = requests.get(
        stack.url + "/data/web1/small.bin", headers={**AUTH, "Range": "bytes=0-3", "If-Range": '"x"'}, timeout=10
    )
    assert r.status_code == 200 and r.content == stack.files.small
    r = requests.get(stack.url + "/data/web1/small.bin", headers={**AUTH, "If-None-Match": etag}, timeout=10)
    assert r.status_code == 304


def test_http_store_missing_object_is_404_only_after_authorisation(stack: Stack) -> None:
    before = len(stack.upstream_log())
    assert requests.get(stack.url + "/data/web1/nope.bin", timeout=10).status_code == 401
    assert (
        requests.get(
            stack.url + "/data/web1/nope.bin", headers={"Authorization": "Bearer tok-none"}, timeout=10
        ).status_code
        == 403
    )
    assert len(stack.upstream_log()) == before  # the upstream was never asked
    assert requests.get(stack.url + "/data/web1/nope.bin", headers=AUTH, timeout=10).status_code == 404


def test_px03_real_upstream_gets_our_credential_never_the_clients(stack: Stack) -> None:
    requests.get(
        stack.url + "/data/web1/dir/nested.bin",
        timeout=10,
        headers={
            "Authorization": "Bearer tok-ds1",
            "Cookie": "session=client-cookie",
            "X-Api-Key": "client-chosen",
            "Range": "bytes=0-1",
        },
    )
    line = [entry for entry in stack.upstream_log() if "/ds1/dir/nested.bin" in entry][-1]
    assert f"|key={UPSTREAM_KEY}|" in line
    assert "|auth=-|" in line and "|cookie=-|" in line and "tok-ds1" not in line and "client" not in line
    assert "|range=bytes=0-1" in line


def test_px04_real_upstream_redirect_is_502_and_not_followed(stack: Stack) -> None:
    r = requests.get(stack.url + "/data/webredirect/x", headers=AUTH, timeout=10, allow_redirects=False)
    assert r.status_code == 502 and r.json()["error"] == "upstream_redirect"
    assert "Location" not in r.headers
    r = requests.get(stack.url + "/data/webbroken/x", headers=AUTH, timeout=10)
    assert r.status_code == 502 and r.json()["error"] == "upstream_error"


# ------------------------------------------------------------------ recording upstream


def test_px03_px06_upstream_receives_exactly_the_allow_list(stack: Stack, tmp_path: Path) -> None:
    def serve(rec: Recorded, sock: socket.socket) -> None:
        respond(
            sock,
            "206 Partial Content",
            [("Content-Length", "2"), ("Content-Range", "bytes 0-1/10"), ("Connection", "close")],
            b"ab",
        )

    with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream) as gw:
        resp = raw_get(
            gw.port,
            "/data/rec/a.bin",
            {
                "Authorization": "Bearer tok-ds1",
                "Cookie": "sid=client",
                "Proxy-Authorization": "Basic eDp5",
                "X-Forwarded-For": "127.0.0.1",
                "X-Forwarded-Host": "evil.test",
                "Forwarded": "for=1.2.3.4",
                "X-Api-Key": "client-chosen",
                "TE": "trailers",
                "Upgrade": "websocket",
                "X-Custom": "1",
                "Connection": "close, X-Api-Key, Range, X-Custom",
                "Keep-Alive": "timeout=5",
                "Range": "bytes=0-1",
                "If-Range": '"v1"',
                "If-None-Match": '"v0"',
                "Accept-Encoding": "gzip",
            },
        )
    assert resp.status == 206 and resp.body == b"ab"
    [rec] = upstream.requests
    assert rec.target == "/ds1/a.bin"
    assert rec.names() == {"host", "user-agent", "accept-encoding", "x-api-key", "range", "if-range", "if-none-match"}
    got = {k.lower(): v for k, v in rec.headers}
    assert got["x-api-key"] == UPSTREAM_KEY and got["accept-encoding"] == "identity"
    assert got["range"] == "bytes=0-1" and got["if-range"] == '"v1"'


def test_px06_hop_by_hop_and_unsafe_upstream_response_headers_are_dropped(stack: Stack, tmp_path: Path) -> None:
    def serve(rec: Recorded, sock: socket.socket) -> None:
        respond(
            sock,
            "200 OK",
            [
                ("Content-Length", "5"),
                ("Connection", "close, X-Foo, Last-Modified"),
                ("X-Foo", "bar"),
                ("Keep-Alive", "timeout=5"),
                ("Upgrade", "h2c"),
                ("Trailer", "X-T"),
                ("Proxy-Authenticate", "Basic"),
                ("Set-Cookie", "sid=upstream"),
                ("X-Accel-Redirect", "/_gateway/local/ds2/secret.bin"),
                ("Location", "http://evil.test/"),
                ("Cache-Control", "public, max-age=3600"),
                ("Content-Type", "text/html"),
                ("ETag", '"up-1"'),
                ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("Content-Encoding", "identity"),
            ],
            b"hello",
        )

    with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream) as gw:
        resp = raw_get(gw.port, "/data/rec/a.bin", AUTH)
    names = {k.lower() for k, _ in resp.headers}
    assert resp.status == 200 and resp.body == b"hello"
    for dropped in (
        "x-foo",
        "keep-alive",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "set-cookie",
        "x-accel-redirect",
        "location",
        "last-modified",
    ):
        assert dropped not in names, dropped
    assert resp.header("ETag") == '"up-1"'
    assert resp.header("Content-Type") == "application/octet-stream"
    assert resp.header("Cache-Control") == "private, no-store"


@pytest.mark.parametrize(
    "bad", [("ETag", '"a\x00b"'), ("ETag", '"caf\xe9"'), ("Content-Range", "bytes 0-1/x"), ("Content-Length", "-5")]
)
def test_px08_bad_upstream_header_is_502_never_relayed(stack: Stack, tmp_path: Path, bad: tuple[str, str]) -> None:
    def serve(rec: Recorded, sock: socket.socket) -> None:
        headers = [bad, ("Connection", "close")]
        if bad[0] != "Content-Length":
            headers.append(("Content-Length", "2"))
        respond(sock, "206 Partial Content" if bad[0] == "Content-Range" else "200 OK", headers, b"ab")

    with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream) as gw:
        resp = raw_get(gw.port, "/data/rec/a.bin", AUTH)
    assert resp.status == 502, resp
    assert resp.body.startswith(b"{") and resp.body != b"ab"


def test_px04_redirect_to_attacker_is_never_followed(stack: Stack, tmp_path: Path) -> None:
    with RecordingUpstream(lambda rec, sock: respond(sock, "200 OK", [("Content-Length", "0")])) as attacker:

        def serve(rec: Recorded, sock: socket.socket) -> None:
            respond(
                sock,
                "302 Found",
                [("Location", attacker.url + "steal"), ("Content-Length", "0"), ("Connection", "close")],
            )

        with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream) as gw:
            for status in ("302", "307", "308", "301"):
                r = requests.get(gw.url + "/data/rec/a.bin", headers=AUTH, timeout=10, allow_redirects=False)
                assert r.status_code == 502, status
        time.sleep(0.2)
        assert attacker.requests == []


def test_px10_upstream_ignoring_range_is_relayed_as_200(stack: Stack, tmp_path: Path) -> None:
    def serve(rec: Recorded, sock: socket.socket) -> None:
        respond(sock, "200 OK", [("Content-Length", "10"), ("Connection", "close")], b"0123456789")

    with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream) as gw:
        r = requests.get(gw.url + "/data/rec/a.bin", headers={**AUTH, "Range": "bytes=2-3"}, timeout=10)
    assert r.status_code == 200 and r.content == b"0123456789" and "Content-Range" not in r.headers


def test_px13_content_encoding_is_passed_through_undecoded(stack: Stack, tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)

    def serve(rec: Recorded, sock: socket.socket) -> None:
        respond(
            sock,
            "200 OK",
            [("Content-Length", str(len(bomb))), ("Content-Encoding", "gzip"), ("Connection", "close")],
            bomb,
        )

    with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream) as gw:
        resp = raw_get(gw.port, "/data/rec/a.bin", AUTH)
    assert resp.status == 200 and resp.header("Content-Encoding") == "gzip"
    assert resp.body == bomb and resp.header("Content-Length") == str(len(bomb))


def test_px13_upstream_sending_less_than_its_length_ends_the_response_visibly(stack: Stack, tmp_path: Path) -> None:
    def serve(rec: Recorded, sock: socket.socket) -> None:
        respond(sock, "200 OK", [("Content-Length", "100000"), ("Connection", "close")], b"x" * 40_000)
        sock.shutdown(socket.SHUT_WR)

    with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream) as gw:
        resp = raw_get(gw.port, "/data/rec/a.bin", AUTH)
        metrics = requests.get(gw.url + "/metrics", timeout=5).text
    assert resp.status == 200 and resp.header("Content-Length") == "100000"
    assert not resp.complete and len(resp.body) < 100_000
    assert set(resp.body) <= {ord("x")}  # never padded
    assert 'gateway_transfers_total{result="broken"} 1' in metrics


def test_px14_upstream_reset_mid_stream_is_visible_to_the_client(stack: Stack, tmp_path: Path) -> None:
    def serve(rec: Recorded, sock: socket.socket) -> None:
        respond(sock, "200 OK", [("Content-Length", str(10 * 2**20)), ("Connection", "close")], b"y" * 2**20)
        time.sleep(0.3)  # let the first megabyte flow to the client, then cut
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        sock.close()

    with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream) as gw:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.get(gw.url + "/data/rec/a.bin", headers=AUTH, timeout=10).content  # noqa: B018
        # the gateway still serves the next request (no stuck worker)
        r = requests.get(gw.url + "/data/ds1/small.bin", headers=AUTH, timeout=10)
        assert r.status_code == 200


def test_px14_upstream_stall_is_504_within_the_read_timeout(stack: Stack, tmp_path: Path) -> None:
    def serve(rec: Recorded, sock: socket.socket) -> None:
        time.sleep(3)

    with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream, read_timeout_seconds=0.5) as gw:
        started = time.monotonic()
        r = requests.get(gw.url + "/data/rec/a.bin", headers=AUTH, timeout=10)
    assert r.status_code == 504 and time.monotonic() - started < 2.5


def test_px14_upstream_reset_before_any_byte_is_a_clean_502(stack: Stack, tmp_path: Path) -> None:
    def serve(rec: Recorded, sock: socket.socket) -> None:
        respond(sock, "200 OK", [("Content-Length", "1000"), ("Connection", "close")])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream) as gw:
        r = requests.get(gw.url + "/data/rec/a.bin", headers=AUTH, timeout=10)
    assert r.status_code == 502 and r.json()["error"] == "upstream_broken"


def test_upstream_unreachable_is_502(stack: Stack, tmp_path: Path) -> None:
    from tests.support.parts import free_port

    dead = RecordingUpstream(lambda rec, sock: None)
    dead.server.server_close()  # nothing listens on that port any more
    dead.url  # noqa: B018
    with through(stack, tmp_path, dead) as gw:
        r = requests.get(gw.url + "/data/rec/a.bin", headers=AUTH, timeout=10)
    assert r.status_code == 502 and r.json()["error"] == "upstream_unreachable"
    assert free_port()


def test_px15_client_disconnect_releases_the_upstream_promptly(stack: Stack, tmp_path: Path) -> None:
    released = threading.Event()

    def serve(rec: Recorded, sock: socket.socket) -> None:
        respond(sock, "200 OK", [("Content-Length", str(2**34)), ("Connection", "close")])
        try:
            for _ in range(100_000):
                sock.sendall(b"z" * 65536)
        except OSError:
            released.set()

    with RecordingUpstream(serve) as upstream, through(stack, tmp_path, upstream) as gw:
        with socket.create_connection(("127.0.0.1", gw.port)) as client:
            client.sendall(b"GET /data/rec/a.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-ds1\r\n\r\n")
            assert client.recv(65536)
        assert released.wait(5), "the upstream connection was not closed after the client left"
        metrics = requests.get(gw.url + "/metrics", timeout=5).text
    assert 'gateway_transfers_total{result="aborted"} 1' in metrics


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_px13_streaming_256_mib_through_the_http_store_keeps_memory_flat(stack: Stack) -> None:
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kib())
            time.sleep(0.01)

    baseline = _rss_kib()
    sampler = threading.Thread(target=sample)
    sampler.start()
    total = 0
    try:
        with requests.get(stack.url + "/data/web1/big.bin", headers=AUTH, timeout=30, stream=True) as r:
            assert r.status_code == 200
            for chunk in r.iter_content(1 << 20):
                total += len(chunk)
    finally:
        done.set()
        sampler.join()
    assert total == 256 * 2**20
    assert peak[0] - baseline < 48 * 1024, f"RSS grew by {(peak[0] - baseline) // 1024} MiB"


def test_raw_exchange_helper_sees_one_response(stack: Stack) -> None:
    responses, rest = raw_exchange(
        stack.gateway.port,
        b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-ds1\r\nConnection: close\r\n\r\n",
    )
    assert len(responses) == 1 and responses[0].complete and rest == b""
