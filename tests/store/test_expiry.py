"""Lifetimes: nothing is returned after its end, and the backend lets it go."""

from __future__ import annotations

import math
import sqlite3
import time

import redis

from broker.oidc.records import RefreshToken
from tests.store.conftest import Backend, redis_settings
from tests.support.legacy_store import Store, open_store
from tests.support.redis_server import RedisServer


def _start_of_next_second() -> int:
    """Sleep to just after a whole second, so `now + 1` is a full second away; return now."""
    t = time.time()
    time.sleep(math.ceil(t) - t + 0.02)
    return int(time.time())


def _sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.time()))


def test_every_record_with_a_lifetime_vanishes_when_it_ends(backend: Backend) -> None:
    store: Store = backend.store
    now = _start_of_next_second()
    end = now + 1
    store.put_ticket("code", "c1", {"v": 1}, ttl=1)
    assert store.add_ticket("jti", "j1", {"v": 1}, ttl=1) is True
    store.put_session("s1", {"v": 1}, ttl=1)
    store.revoke_token_id("jti-1", end)
    store.put_refresh_token(RefreshToken("h1", "fam-1", "id-1", "cli-1", "openid", now, end))
    store.put_refresh_token(RefreshToken("h2", "fam-2", "id-1", "cli-1", "openid", now, end))
    store.put_ticket("code", "long", {"v": 2}, ttl=60)
    # all alive within their lifetime
    assert store.peek_ticket("code", "c1") == {"v": 1}
    assert store.get_session("s1") == {"v": 1}
    assert store.is_token_revoked("jti-1") is True
    assert store.use_refresh_token("h2") is not None

    _sleep_until(end + 0.1)
    assert store.peek_ticket("code", "c1") is None
    assert store.consume_ticket("code", "c1") is None
    assert store.add_ticket("jti", "j1", {"v": 2}, ttl=60) is True  # an ended ticket frees its key
    assert store.peek_ticket("jti", "j1") == {"v": 2}
    assert store.get_session("s1") is None
    assert store.is_token_revoked("jti-1") is False
    assert store.use_refresh_token("h1") is None
    assert store.use_refresh_token("h2") is None
    assert store.consume_ticket("code", "long") == {"v": 2}
    # and the backend does not keep them: only the ticket added after the end is left
    if backend.kind == "sqlite":
        assert _leftovers(backend) == ["ticket:jti:j1"]
    else:  # the record, and its entry in the kind's sorted set
        assert _leftovers(backend) == ["a:ticket%3Ajti", "r:ticket%3Ajti:j1"]


def _leftovers(backend: Backend) -> list[str]:
    """What the backend still holds of the ended records, read behind the store's back."""
    if backend.kind == "sqlite":
        backend.store.purge_expired()  # normally every 60 s during writes
        conn = sqlite3.connect(backend.settings.sqlite_path)
        try:
            rows = conn.execute(
                "SELECT kind || ':' || key FROM records UNION ALL SELECT 'term:' || term FROM record_terms "
                "UNION ALL SELECT 'counter:' || key FROM counters"
            ).fetchall()
        finally:
            conn.close()
        return sorted(r[0] for r in rows)
    backend.store.purge_expired()  # the records expire on their own; this drops their set entries
    client = redis.Redis.from_url(backend.settings.store.url.get_secret_value(), decode_responses=True)
    try:
        prefix = backend.settings.store.namespace + ":"
        return sorted(k[len(prefix) :] for k in client.scan_iter(match=prefix + "*"))
    finally:
        client.close()


def test_redis_keys_carry_the_records_lifetime(redis_server: RedisServer) -> None:
    settings = redis_settings(redis_server.url)
    store = open_store(settings)
    ns = settings.store.namespace
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        store.put_ticket("code", "c1", {}, ttl=30)
        store.put_session("s1", {}, ttl=40)
        store.revoke_token_id("jti-1", int(time.time()) + 50)
        store.put_refresh_token(RefreshToken("h1", "fam-1", "id-1", "cli-1", "openid", 0, int(time.time()) + 60))
        assert 0 < client.ttl(f"{ns}:r:ticket%3Acode:c1") <= 30
        assert 0 < client.ttl(f"{ns}:r:session:s1") <= 40
        assert 0 < client.ttl(f"{ns}:r:revoked-jti:jti-1") <= 50
        assert 0 < client.ttl(f"{ns}:r:refresh-token:h1") <= 60
        # set entries are scored by the record's end, so readers skip them once it has passed
        assert client.zscore(f"{ns}:i:refresh-token:family%3Afam-1", "h1") <= time.time() + 60
        store.revoke_family("fam-1")
        assert client.ttl(f"{ns}:r:revoked-family:fam-1") > 0
        # records without a lifetime never expire
        store.audit_append({"a": 1}, at=1)
        assert client.ttl(f"{ns}:audit") == -1
    finally:
        client.close()
        store.close()
