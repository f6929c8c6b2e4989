"""broker.ga4gh.cache.VerifiedCache: keys, expiry, bounds, revocation, the exact-match front, threads."""

from __future__ import annotations

import threading

import pytest

from broker.ga4gh import cache as cache_module
from broker.ga4gh.cache import FRONT_MIN_CHARS, FRONT_SUFFIX_CHARS, VerifiedCache, cache_key

SCOPE = "visa\x00trust-v1\x00\x00"
LONG = "h" * 100 + "." + "p" * FRONT_MIN_CHARS + "." + "s" * 86  # a passport-sized token


def test_key_is_sha256_of_scope_and_exact_bytes() -> None:
    key = cache_key("a.b.c", SCOPE)
    assert len(key) == 32
    assert key == cache_key("a.b.c", SCOPE)
    assert key != cache_key("a.b.c=", SCOPE)  # another spelling is another key
    assert key != cache_key("a.b.c", "visa\x00trust-v2\x00\x00")  # trust changed
    assert key != cache_key("a.b.c", "passport\x00trust-v1\x00\x00")  # another question


def test_hit_until_expiry_then_miss() -> None:
    cache = VerifiedCache(10)
    assert cache.put_token("t1", SCOPE, "value", expires=1000, jtis=["j1"], now=900)
    assert cache.get_token("t1", SCOPE, now=999) == "value"
    assert cache.get_token("t1", SCOPE, now=1000) is None  # ends at exp
    assert len(cache) == 0
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations) == (1, 1, 1)


def test_already_expired_is_not_stored() -> None:
    cache = VerifiedCache(10)
    assert not cache.put_token("t1", SCOPE, "value", expires=100, now=100)
    assert len(cache) == 0


def test_max_ttl_shortens_entries() -> None:
    cache = VerifiedCache(10, max_ttl_seconds=60)
    cache.put_token("t1", SCOPE, "v", expires=10_000, now=1000)
    assert cache.get_token("t1", SCOPE, now=1059) == "v"
    assert cache.get_token("t1", SCOPE, now=1060) is None


def test_other_scope_or_spelling_misses() -> None:
    cache = VerifiedCache(10)
    cache.put_token("t1", SCOPE, "v", expires=1000, now=0)
    assert cache.get_token("t1", "visa\x00trust-v2\x00\x00", now=1) is None
    assert cache.get_token("t1 ", SCOPE, now=1) is None
    assert cache.get_token("t1", SCOPE, now=1) == "v"


def test_bounded_lru() -> None:
    cache = VerifiedCache(3)
    for i in range(3):
        cache.put_token(f"t{i}", SCOPE, i, expires=1000, jtis=[f"j{i}"], now=0)
    assert cache.get_token("t0", SCOPE, now=1) == 0  # t0 is now the most recently used
    cache.put_token("t3", SCOPE, 3, expires=1000, jtis=["j3"], now=0)
    assert len(cache) == 3
    assert cache.get_token("t1", SCOPE, now=1) is None  # least recently used went first
    assert [cache.get_token(t, SCOPE, now=1) for t in ("t0", "t2", "t3")] == [0, 2, 3]
    assert cache.stats().evictions == 1
    assert cache.evict_jti("j1") == 0  # its index entry went with it


def test_evict_jti_drops_every_entry_relying_on_it() -> None:
    cache = VerifiedCache(10)
    cache.put_token("visa-a", SCOPE, "a", expires=1000, jtis=["ja"], now=0)
    cache.put_token("visa-b", SCOPE, "b", expires=1000, jtis=["jb"], now=0)
    cache.put_token("passport", "passport\x00", "p", expires=1000, jtis=["jp", "ja", "jb", None, "ja"], now=0)
    assert cache.evict_jti("ja") == 2
    assert cache.get_token("visa-a", SCOPE, now=1) is None
    assert cache.get_token("passport", "passport\x00", now=1) is None
    assert cache.get_token("visa-b", SCOPE, now=1) == "b"
    assert cache.evict_jti("ja") == 0
    assert cache.evict_jti("jb") == 1
    assert cache.stats().revocations == 3
    assert len(cache) == 0 and cache._by_jti == {}


def test_replacing_an_entry_reindexes_its_jtis() -> None:
    cache = VerifiedCache(10)
    cache.put_token("t", SCOPE, "old", expires=1000, jtis=["j-old"], now=0)
    cache.put_token("t", SCOPE, "new", expires=1000, jtis=["j-new"], now=0)
    assert cache.evict_jti("j-old") == 0
    assert cache.get_token("t", SCOPE, now=1) == "new"
    assert cache.evict_jti("j-new") == 1


def test_purge_and_clear() -> None:
    cache = VerifiedCache(10)
    cache.put_token("a", SCOPE, 1, expires=10, now=0)
    cache.put_token("b", SCOPE, 2, expires=20, now=0)
    assert cache.purge_expired(now=15) == 1
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.get_token("b", SCOPE, now=1) is None


@pytest.mark.parametrize("bad", [0, -1])
def test_bounds_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError):
        VerifiedCache(bad)
    with pytest.raises(ValueError):
        VerifiedCache(10, max_ttl_seconds=bad)


# ---------------------------------------------------------------------- the exact-match front


def test_long_token_hit_goes_through_the_front() -> None:
    cache = VerifiedCache(10)
    cache.put_token(LONG, SCOPE, "p", expires=1000, now=0)
    assert len(cache._front) == 1
    copy = (LONG + "!")[:-1]  # an equal string that is another object
    assert copy is not LONG
    assert cache.get_token(copy, SCOPE, now=1) == "p"


def test_front_needs_the_whole_token_to_be_equal() -> None:
    """Same scope and same last 64 characters, different body: a miss, never the other's result."""
    cache = VerifiedCache(10)
    cache.put_token(LONG, SCOPE, "genuine", expires=1000, now=0)
    forged = "x" + LONG[1:]
    assert forged[-FRONT_SUFFIX_CHARS:] == LONG[-FRONT_SUFFIX_CHARS:]
    assert cache.get_token(forged, SCOPE, now=1) is None
    assert cache.get_token(LONG, SCOPE, now=1) == "genuine"


def test_front_entry_without_main_entry_is_a_miss() -> None:
    cache = VerifiedCache(10)
    cache.put_token(LONG, SCOPE, "p", expires=1000, jtis=["jp"], now=0)
    cache.evict_jti("jp")
    assert cache.get_token(LONG, SCOPE, now=1) is None
    assert cache.get_token(LONG, SCOPE, now=1001) is None


def test_short_tokens_skip_the_front() -> None:
    cache = VerifiedCache(10)
    cache.put_token("short.visa.token", SCOPE, "v", expires=1000, now=0)
    assert cache._front == {}
    assert cache.get_token("short.visa.token", SCOPE, now=1) == "v"


def test_front_is_bounded_by_entries_and_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "FRONT_MAX_CHARS", 3 * (len(LONG) + 4))
    cache = VerifiedCache(100)
    tokens = [LONG + f"{i:04d}" for i in range(10)]
    for token in tokens:
        cache.put_token(token, SCOPE, token[-4:], expires=1000, now=0)
    assert len(cache._front) == 3 and cache._front_chars <= 3 * (len(LONG) + 4)
    # Entries that fell out of the front are still found through their SHA-256 key.
    assert [cache.get_token(t, SCOPE, now=1) for t in tokens] == [t[-4:] for t in tokens]
    small = VerifiedCache(2)
    for token in tokens:
        small.put_token(token, SCOPE, "v", expires=1000, now=0)
    assert len(small._front) <= 2


# ---------------------------------------------------------------------- threads


def test_concurrent_use_stays_consistent() -> None:
    cache = VerifiedCache(500)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(400):
                token = f"w{n}-{i % 120}"
                cache.put_token(token, SCOPE, token, expires=1000, jtis=[f"j{i % 50}"], now=0)
                value = cache.get_token(token, SCOPE, now=1)
                assert value in (None, token)
                if i % 37 == 0:
                    cache.evict_jti(f"j{(i + n) % 50}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache) <= 500
    stats = cache.stats()
    assert stats.hits + stats.misses == 8 * 400
    # The jti index points only at live entries.
    for keys in cache._by_jti.values():
        for key in keys if isinstance(keys, list) else [keys]:
            assert key in cache._entries
