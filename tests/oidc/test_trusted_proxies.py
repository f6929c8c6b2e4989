"""Issue 11 item 3 / THREAT-MODEL PX-20: behind a real nginx, limits count the client's address, and
``/metrics`` is never opened by a forwarded request.

A real broker (``server.trusted_proxies: [127.0.0.1]``) behind a real nginx that sets
``X-Forwarded-For $remote_addr``; clients connect from their own 127/8 addresses, so each is a
different client to nginx.
"""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from broker.oidc.passwords import hash_secret
from broker.oidc.rate_limit import CLIENT_AUTH_FAILURES
from broker.web.proxies import client_of, parse_networks
from tests.gateway.support import Nginx
from tests.oidc.broker_process import BrokerProcess
from tests.support.parts import free_port

SECRET = "proxied-" + "p" * 32
TOKEN_BODY = {"grant_type": "authorization_code", "code": "x", "redirect_uri": "https://app.example/cb"}


class Front:
    """The broker and the nginx in front of it."""

    def __init__(self, broker: BrokerProcess, front_port: int) -> None:
        self.broker = broker
        self.front_port = front_port

    def request(
        self,
        method: str,
        path: str,
        *,
        source: str,
        via_proxy: bool,
        body: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], str]:
        port = self.front_port if via_proxy else self.broker.port
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, urlencode(body) if body is not None else None, headers=sent)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
        finally:
            connection.close()

    def token(self, source: str, secret: str, *, via_proxy: bool = True, **headers: str) -> tuple[int, str]:
        body = {**TOKEN_BODY, "client_id": "proxied", "client_secret": secret}
        status, _, text = self.request("POST", "/token", source=source, via_proxy=via_proxy, body=body, headers=headers)
        return status, text


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    client = {
        "client_id": "proxied",
        "redirect_uris": ["https://app.example/cb"],
        "auth_method": "client_secret_post",
        "secret_hash": hash_secret(SECRET, log2_n=10),
    }
    settings = {"server": {"trusted_proxies": ["127.0.0.1"]}, "oidc": {"clients": [client]}}
    broker = BrokerProcess(directory=tmp_path_factory.mktemp("proxied"), settings=settings).start()
    front_port = free_port()
    conf = f"""
server {{
    listen 127.0.0.1:{front_port};
    location / {{
        proxy_pass http://127.0.0.1:{broker.port};
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header Host $host;
    }}
}}
"""
    nginx = Nginx(Path(tmp_path_factory.mktemp("nginx-front")), {"front": conf}).start()
    try:
        nginx.wait(front_port)
        yield Front(broker, front_port)
    finally:
        nginx.stop()
        broker.stop()


def _addresses() -> tuple[str, str]:
    base = f"127.{secrets.randbelow(200) + 20}.{secrets.randbelow(200) + 20}"
    return f"{base}.21", f"{base}.22"


def test_px20_behind_a_trusted_proxy_one_address_cannot_lock_out_another(front: Front) -> None:
    guesser, victim = _addresses()
    for i in range(CLIENT_AUTH_FAILURES.count):
        status, text = front.token(guesser, f"guess-{i}")
        assert status == 401 and json.loads(text)["error"] == "invalid_client", (i, status, text[:200])
    assert front.token(guesser, SECRET)[0] == 429  # the guesser is locked out ...
    status, text = front.token(victim, SECRET)  # ... the real client behind the same proxy is not
    assert status == 400 and json.loads(text)["error"] == "invalid_grant", text[:200]
    # a client cannot choose its address: nginx overwrites X-Forwarded-For, and the broker reads it
    # only from the trusted proxy, never from a direct peer
    assert front.token(guesser, SECRET, **{"X-Forwarded-For": victim})[0] == 429
    assert front.token(guesser, SECRET, via_proxy=False, **{"X-Forwarded-For": victim})[0] == 429


def test_px20_metrics_are_never_opened_by_a_forwarded_request(front: Front) -> None:
    direct, _, text = front.request("GET", "/metrics", source="127.0.0.1", via_proxy=False)
    assert direct == 200 and "# TYPE" in text
    proxied, _, _ = front.request("GET", "/metrics", source="127.0.0.1", via_proxy=True)
    assert proxied == 404
    spoofed, _, _ = front.request(
        "GET", "/metrics", source="127.0.0.1", via_proxy=False, headers={"X-Forwarded-For": "127.0.0.1"}
    )
    assert spoofed == 404


@pytest.mark.parametrize(
    "peer,forwarded,expected",
    [
        ("10.0.0.1", "192.0.2.7", "192.0.2.7"),  # one trusted hop
        ("10.0.0.1", "198.51.100.9, 192.0.2.7", "192.0.2.7"),  # the client's own claim on the left is ignored
        ("10.0.0.1", "198.51.100.9, 192.0.2.7, 10.0.0.2", "192.0.2.7"),  # two trusted hops
        ("192.0.2.50", "192.0.2.7", "192.0.2.50"),  # an untrusted peer's header is ignored
        ("10.0.0.1", "not-an-address", "10.0.0.1"),  # malformed: the proxy, never a written address
        ("10.0.0.1", None, "10.0.0.1"),
    ],
)
def test_px20_client_address_is_the_rightmost_untrusted_hop(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_of(peer, forwarded, parse_networks(["10.0.0.0/24"])) == expected
