"""No log line at any level carries a credential (issue 11 item 10).

A real ``serve`` (granian, and ``--dev``) runs with ``log_level: DEBUG``; requests carry a Basic
client secret, a bearer token (a JWS-shaped one and an opaque one), a signed-URL signature, an
authorization code, a ``state``, a device user code and a password, in headers, query strings and
form bodies, including clients that disconnect early (mid-head, and before reading the answer) and
a malformed request. None of them needs to be valid. Then the whole log output is searched for
every secret string (and the base64 of the Basic credential): none may appear.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from broker.serve.logs import redact
from tests.availability.deployment import Broker

SECRETS = {
    "basic": "client-secret-b4sic-71f3e9",
    "bearer": "opaque-bearer-tok-5d2a81",
    "jws": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJsZWFrLXRlc3QifQ.c2lnbmF0dXJlLWxlYWstdGVzdA",
    "signature": "sIgNaTuRe0f1e2d3c4b5a697887",
    "code": "authz-code-9c8b7a6f5e4d",
    "state": "state-value-31a4c2",
    "user_code": "WXYZ-KLMN",
    "password": "pa55word-s3cret-8e1d",
    "early": "early-disconnect-tok-a7c3",
    "malformed": "malformed-req-tok-e6b2",
}
BASIC = base64.b64encode(f"portal:{SECRETS['basic']}".encode()).decode()

pytestmark = pytest.mark.slow  # real serve processes


def _requests(broker: Broker) -> None:
    """Every way a credential reaches the broker, answered or not."""
    url = broker.url
    auth = {"Authorization": f"Basic {BASIC}"}
    requests.post(
        f"{url}/token", headers=auth, data={"grant_type": "authorization_code", "code": SECRETS["code"]}, timeout=10
    )
    requests.post(f"{url}/token", data={"grant_type": "password", "password": SECRETS["password"]}, timeout=10)
    for token in (SECRETS["bearer"], SECRETS["jws"]):
        requests.get(f"{url}/userinfo", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        requests.get(
            f"{url}/gateway/decision",
            headers={"Authorization": f"Bearer {token}", "X-Original-URI": "/data/ds1/large.bin"},
            timeout=10,
        )
    requests.get(f"{url}/data/ds1/large.bin?expires=9999999999&signature={SECRETS['signature']}", timeout=10)
    requests.get(f"{url}/login/callback/upstream?code={SECRETS['code']}&state={SECRETS['state']}", timeout=10)
    requests.get(f"{url}/authorize?client_id=portal&state={SECRETS['state']}&response_type=code", timeout=10)
    requests.get(f"{url}/device?user_code={SECRETS['user_code']}", timeout=10)
    requests.post(f"{url}/device", data={"user_code": SECRETS["user_code"]}, timeout=10)
    requests.get(f"{url}/no-such-page?access_token={SECRETS['bearer']}", timeout=10)

    # Early disconnects: mid-head, after a full head with a body promised, and before reading the answer.
    for head in (
        f"GET /userinfo HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {SECRETS['early']}\r\n",
        f"POST /token HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {BASIC}\r\nContent-Length: 500\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n\r\ncode={SECRETS['code']}&",
        f"GET /userinfo?code={SECRETS['code']} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {SECRETS['early']}\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
            sock.sendall(head.encode())
            time.sleep(0.2)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    # A request the HTTP parser refuses, credentials in its request line and headers.
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        sock.sendall(
            f"GET /x?token={SECRETS['malformed']} HTTP/1.1 extra\r\nAuthorization: Bearer {SECRETS['malformed']}\r\n"
            "Bad Header Line\r\n\r\n".encode()
        )
        with contextlib.suppress(OSError):
            sock.recv(4096)


@pytest.fixture(params=["granian", "dev"])
def debug_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(
        tmp_path / "broker",
        settings={"log_level": "DEBUG", "server": {"workers": 1, "threads": 4}},
        dev=request.param == "dev",
    ).start()
    try:
        yield broker
    finally:
        broker.stop()


def test_no_credential_reaches_the_log_at_debug(debug_broker: Broker) -> None:
    _requests(debug_broker)
    time.sleep(1.0)
    debug_broker.stop()
    log = debug_broker.log_text()
    assert "DEBUG" in log and "logging at DEBUG" in log  # the server really ran at DEBUG
    assert "/token" in log and "/userinfo" in log  # the requests were logged, by path
    leaked = {name: value for name, value in {**SECRETS, "basic_b64": BASIC}.items() if value in log}
    assert not leaked, f"credentials in the log: {sorted(leaked)}"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"Authorization: Basic {BASIC}", BASIC),
        (f"headers={{'Authorization': 'Bearer {SECRETS['bearer']}'}}", SECRETS["bearer"]),
        (f"token {SECRETS['jws']} rejected", SECRETS["jws"]),
        (f"GET /data/x?expires=1&signature={SECRETS['signature']} HTTP/1.1", SECRETS["signature"]),
        (f"/cb?state={SECRETS['state']}&code={SECRETS['code']}", SECRETS["code"]),
        (f"/cb?state={SECRETS['state']}&code={SECRETS['code']}", SECRETS["state"]),
        (f"form: user_code={SECRETS['user_code']}", SECRETS["user_code"]),
        (f"client_secret: '{SECRETS['basic']}'", SECRETS["basic"]),
        (f"redis://:{SECRETS['password']}@10.0.0.5:6379/0", SECRETS["password"]),
        (f'{{"password": "{SECRETS["password"]}"}}', SECRETS["password"]),
        (f"Cookie: session={SECRETS['early']}; other=1", SECRETS["early"]),
    ],
)
def test_redaction_removes_each_kind_of_credential(line: str, secret: str) -> None:
    redacted = redact(line)
    assert secret not in redacted
    assert "[redacted]" in redacted


@pytest.mark.parametrize(
    "line",
    [
        "GET /healthz HTTP/1.1 200",
        "store unavailable (redis): redis: TimeoutError: Timeout reading from socket",
        "serving on 127.0.0.1:8080 with 2 workers x 32 threads (granian)",
        "decision allow for dataset ds1 (visa jti visa-ds1-alice)",
    ],
)
def test_redaction_leaves_ordinary_lines_alone(line: str) -> None:
    assert redact(line) == line
