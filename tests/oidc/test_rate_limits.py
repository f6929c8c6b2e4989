"""Brute force ends in 429 with Retry-After (THREAT-MODEL OA-18, OA-25; RFC 8628 5.1).

The limiter keeps its counts on the store kernel: proven here against SQLite and Redis from
several connections and threads at once, then end to end against the gunicorn broker
(two worker processes share one count).
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import threading
import time
from urllib.parse import urlencode

import pytest
import requests

from broker.oidc.rate_limit import (
    CLIENT_AUTH_FAILURES,
    CLIENT_AUTH_FAILURES_PER_ADDRESS,
    DEVICE_AUTHORIZATIONS,
    INTROSPECTION_MISSES,
    USER_CODE_FAILURES,
)
from broker.web.rate_limit import Limit, RateLimited, RateLimiter, limit_key
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.conftest import SECRETS, OpParts
from tests.oidc.flow import login
from tests.support.legacy_store import open_store

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _inside_one_window(limit: Limit, needed: float) -> None:
    """Sleep into the next fixed window if this one ends within ``needed`` seconds."""
    remaining = limit.window - time.time() % limit.window
    if remaining < needed:
        time.sleep(remaining + 0.05)


def _assert_429(response: requests.Response, limit: Limit) -> None:
    assert response.status_code == 429, (response.status_code, response.text[:300])
    assert 1 <= int(response.headers["Retry-After"]) <= limit.window


def _assert_json_429(response: requests.Response, limit: Limit) -> None:
    _assert_429(response, limit)
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "too_many_requests"
    assert "no-store" in response.headers["Cache-Control"] and response.headers["Pragma"] == "no-cache"


def test_limiter_counts_once_per_slot_across_connections_and_threads(op_parts: OpParts) -> None:
    limit = Limit("test_shared", count=25, window=600)
    _inside_one_window(limit, 30)
    second = open_store(op_parts.settings)  # another connection, as another process would have
    limiters = [RateLimiter(op_parts.kernel), RateLimiter(second.kernel)]
    key = limit_key("shared", secrets.token_hex(4))
    results: list[int | None] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        barrier.wait()
        for _ in range(5):
            number = limiters[index % 2].hit(limit, key)
            with lock:
                results.append(number)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    second.close()
    counted = sorted(n for n in results if n is not None)
    assert counted == list(range(1, limit.count + 1))  # every slot taken exactly once
    assert results.count(None) == 40 - limit.count
    with pytest.raises(RateLimited) as raised:
        limiters[0].check(limit, key)
    assert 1 <= raised.value.retry_after <= limit.window


def test_limiter_window_ends_and_keys_do_not_share_counts(op_parts: OpParts) -> None:
    limit = Limit("test_window", count=3, window=60)
    limiter = RateLimiter(op_parts.kernel)
    now = float(int(time.time()) // 60 * 60 + 10)  # ten seconds into a window
    assert [limiter.hit(limit, "k", now) for _ in range(4)] == [1, 2, 3, None]
    assert limiter.retry_after(limit, "k", now) == 50
    assert limiter.retry_after(limit, "other", now) is None and limiter.hit(limit, "other", now) == 1
    later = now + 60
    assert limiter.retry_after(limit, "k", later) is None
    assert limiter.hit(limit, "k", later) == 1
    with pytest.raises(RateLimited) as raised:
        limiter.take(limit, "k", now)
    assert raised.value.retry_after == 50


def test_limiter_checks_every_key_of_an_event(op_parts: OpParts) -> None:
    per_account, per_address = Limit("test_account", count=2, window=600), Limit("test_address", count=3, window=600)
    _inside_one_window(per_account, 10)
    limiter = RateLimiter(op_parts.kernel)

    def pairs(account: str) -> list[tuple[Limit, str]]:
        return [(per_account, account), (per_address, "192.0.2.1")]

    limiter.hit_all(pairs("a"))
    limiter.hit_all(pairs("a"))
    with pytest.raises(RateLimited) as raised:
        limiter.check_all(pairs("a"))
    assert raised.value.limit == per_account
    limiter.check_all(pairs("b"))  # another account from the same address: one more try left there
    limiter.hit_all(pairs("b"))
    with pytest.raises(RateLimited) as raised:
        limiter.check_all(pairs("c"))
    assert raised.value.limit == per_address


def test_limit_keys_keep_their_parts_apart() -> None:
    assert limit_key("a", "bc") != limit_key("ab", "c")
    with pytest.raises(ValueError):
        Limit("bad", count=0, window=60)


def test_oa18_client_secret_guessing_is_answered_429_with_retry_after(broker: BrokerProcess) -> None:
    url = broker.url("/token")
    body = {"grant_type": "authorization_code", "code": "x", "redirect_uri": "https://app.example/cb"}
    _inside_one_window(CLIENT_AUTH_FAILURES, 15)
    for i in range(CLIENT_AUTH_FAILURES.count):
        if i % 2:
            guess = requests.post(url, data=body, auth=("brute", f"guess-{i}"), timeout=10)
        else:
            guess = requests.post(url, data={**body, "client_id": "brute", "client_secret": f"guess-{i}"}, timeout=10)
        assert guess.status_code == 401 and guess.json()["error"] == "invalid_client", i
    right_secret = requests.post(url, data=body, auth=("brute", SECRETS["brute"]), timeout=10)
    _assert_json_429(right_secret, CLIENT_AUTH_FAILURES)
    introspection = requests.post(broker.url("/introspect"), data={"token": "x"}, auth=("brute", "guess"), timeout=10)
    _assert_json_429(introspection, CLIENT_AUTH_FAILURES)
    # Another client is not affected.
    other = requests.post(url, data=body, auth=("app", SECRETS["app"]), timeout=10)
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"


def test_oa25_token_scanning_at_introspection_is_answered_429(broker: BrokerProcess) -> None:
    url = broker.url("/introspect")
    _inside_one_window(INTROSPECTION_MISSES, 20)
    session = requests.Session()
    for _ in range(INTROSPECTION_MISSES.count):
        miss = session.post(
            url, data={"token": secrets.token_urlsafe(32)}, auth=("scanner", SECRETS["scanner"]), timeout=10
        )
        assert miss.status_code == 200 and miss.json() == {"active": False}
    blocked = session.post(
        url, data={"token": secrets.token_urlsafe(32)}, auth=("scanner", SECRETS["scanner"]), timeout=10
    )
    _assert_json_429(blocked, INTROSPECTION_MISSES)


def test_device_authorization_requests_are_limited_per_client(broker: BrokerProcess) -> None:
    url = broker.url("/device_authorization")
    _inside_one_window(DEVICE_AUTHORIZATIONS, 10)
    for _ in range(DEVICE_AUTHORIZATIONS.count):
        assert requests.post(url, data={"client_id": "cli-flood"}, timeout=10).status_code == 200
    _assert_json_429(requests.post(url, data={"client_id": "cli-flood"}, timeout=10), DEVICE_AUTHORIZATIONS)


def test_device_user_code_guessing_is_answered_429(broker: BrokerProcess) -> None:
    grant = requests.post(broker.url("/device_authorization"), data={"client_id": "cli"}, timeout=10).json()
    http = requests.Session()
    login_page = http.get(broker.url("/login"), params={"next": "/device"}, timeout=10)
    entered = http.get(broker.url(login(http, broker, login_page, username="mallory").headers["Location"]), timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', entered.text).group(1)
    _inside_one_window(USER_CODE_FAILURES, 15)
    for _ in range(USER_CODE_FAILURES.count):
        guess = "".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(8))
        wrong = http.post(broker.url("/device"), data={"csrf_token": csrf, "user_code": guess}, timeout=10)
        assert wrong.status_code == 400 and "unknown or expired" in wrong.text
    real = http.post(broker.url("/device"), data={"csrf_token": csrf, "user_code": grant["user_code"]}, timeout=10)
    _assert_429(real, USER_CODE_FAILURES)
    assert real.headers["Content-Type"].startswith("text/html")


def _post_from(address: str, port: int, body: dict[str, str]) -> tuple[int, dict[str, str], str]:
    """POST /token from the loopback ``address`` (another 127/8 address: its own limits)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(address, 0))
    try:
        connection.request(
            "POST", "/token", urlencode(body), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def test_oa18_fresh_client_id_per_request_trips_the_per_address_limit(broker: BrokerProcess) -> None:
    """Issue 11 item 2: guessing with a new client_id on every request is still counted per address."""
    address = f"127.0.{secrets.randbelow(200) + 20}.{secrets.randbelow(200) + 20}"
    body = {"grant_type": "authorization_code", "code": "x", "redirect_uri": "https://app.example/cb"}
    _inside_one_window(CLIENT_AUTH_FAILURES_PER_ADDRESS, 40)
    for i in range(CLIENT_AUTH_FAILURES_PER_ADDRESS.count):
        fresh = {**body, "client_id": f"made-up-{secrets.token_hex(6)}", "client_secret": f"guess-{i}"}
        status, _, text = _post_from(address, broker.port, fresh)
        assert status == 401 and json.loads(text)["error"] == "invalid_client", (i, status, text[:200])
    # the next one, with yet another client_id, and even a real client's right secret, is refused
    status, headers, text = _post_from(address, broker.port, {**body, "client_id": "never-seen", "client_secret": "x"})
    assert status == 429 and json.loads(text)["error"] == "too_many_requests"
    assert 1 <= int(headers["retry-after"]) <= CLIENT_AUTH_FAILURES_PER_ADDRESS.window
    right = {**body, "client_id": "app", "client_secret": SECRETS["app"]}
    assert _post_from(address, broker.port, right)[0] == 429
    # other addresses are not locked out by it
    elsewhere = requests.post(broker.url("/token"), data=body, auth=("app", SECRETS["app"]), timeout=10)
    assert elsewhere.status_code == 400 and elsewhere.json()["error"] == "invalid_grant"
