"""The one bounded outbound client (broker.net.http), against real sockets on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from broker.net.http import HttpClient, Limits, NetError, check_url

LIMITS = Limits(connect_seconds=1.0, read_seconds=1.0, total_seconds=1.5, max_bytes=1000, allow_http_loopback=True)


class RawServer:
    """A loopback server answering each connection with ``answer(conn)`` (raw bytes, any timing)."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answer = answer
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/doc"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            self.answer(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()


def reply(
    status: str, body: bytes, headers: str = "Content-Type: application/json\r\n"
) -> Callable[[socket.socket], None]:
    def send(conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body)

    return send


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Callable[[socket.socket], None]) -> RawServer:
        server = RawServer(answer)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    ("url", "loopback", "plain", "ok"),
    [
        ("https://idp.example/jwks", False, False, True),
        ("http://idp.example/jwks", False, False, False),
        ("http://idp.example/jwks", False, True, True),  # an operator-named private endpoint
        ("http://127.0.0.1:9/x", False, False, False),
        ("http://127.0.0.1:9/x", True, False, True),
        ("http://[::1]:9/x", True, False, True),
        ("https://user:pw@idp.example/", False, False, False),
        ("https://evil.example\\@good.example/", False, False, False),
        ("https://idp.example/a#frag", False, False, False),
        ("https://idp.example/ a", False, False, False),
        ("https://idpé.example/", False, False, False),
        ("ftp://idp.example/", False, False, False),
        ("https://" + "a" * 2100 + ".example/", False, False, False),
    ],
)
def test_urls_are_checked_before_any_connection(url: str, loopback: bool, plain: bool, ok: bool) -> None:
    if ok:
        assert check_url(url, loopback, plain) == url
    else:
        with pytest.raises(NetError) as info:
            check_url(url, loopback, plain)
        assert info.value.reason == "bad_url"


def test_json_answer_is_read_and_parsed_strictly(serve: Callable[..., RawServer]) -> None:
    server = serve(reply("200 OK", b'{"a": 1}'))
    assert HttpClient().json("GET", server.url, LIMITS, what="document") == {"a": 1}
    duplicate = serve(reply("200 OK", b'{"a": 1, "a": 2}'))
    with pytest.raises(NetError) as info:
        HttpClient().json("GET", duplicate.url, LIMITS, what="document")
    assert info.value.reason == "bad_json"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (reply("302 Found", b"", "Location: http://127.0.0.1:1/elsewhere\r\n"), "redirect"),
        (reply("500 Internal Server Error", b"{}"), "bad_status"),
        (reply("200 OK", b"{}", "Content-Type: text/html\r\n"), "bad_content_type"),
        (reply("200 OK", b"x" * 1001), "too_large"),
        (reply("200 OK", b"{}", "Content-Type: application/json\r\nContent-Encoding: gzip\r\n"), "compressed"),
    ],
)
def test_each_bad_answer_fails_with_its_reason(
    serve: Callable[..., RawServer], answer: Callable[[socket.socket], None], reason: str
) -> None:
    server = serve(answer)
    with pytest.raises(NetError) as info:
        HttpClient().json("GET", server.url, LIMITS, what="document")
    assert info.value.reason == reason


def test_a_redirect_is_never_followed(serve: Callable[..., RawServer]) -> None:
    target = serve(reply("200 OK", b"{}"))
    redirect = serve(reply("302 Found", b"", f"Location: {target.url}\r\n"))
    assert HttpClient().request("GET", redirect.url, LIMITS).status == 302
    assert target.connections == 0


def test_a_server_dripping_its_headers_is_abandoned_at_the_deadline(serve: Callable[..., RawServer]) -> None:
    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(20):  # one header line every 0.4 s: no single read times out
            time.sleep(0.4)
            conn.sendall(b"X-Slow: 1\r\n")

    server = serve(drip)
    started = time.monotonic()
    with pytest.raises(NetError) as info:
        HttpClient().request("GET", server.url, LIMITS)
    assert info.value.reason == "timeout"
    assert time.monotonic() - started < LIMITS.total_seconds + 1.0


def test_a_dead_port_is_a_connection_failure() -> None:
    port = socket.create_server(("127.0.0.1", 0))
    dead = port.getsockname()[1]
    port.close()
    with pytest.raises(NetError) as info:
        HttpClient().request("GET", f"http://127.0.0.1:{dead}/x", LIMITS)
    assert info.value.reason == "connection"


def test_proxy_variables_of_the_environment_are_ignored(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = serve(reply("200 OK", b'{"via": "proxy"}'))
    server = serve(reply("200 OK", b'{"via": "direct"}'))
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert HttpClient().json("GET", server.url, LIMITS, what="document") == {"via": "direct"}
    assert proxy.connections == 0
