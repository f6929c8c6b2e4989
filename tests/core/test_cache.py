"""broker.core.cache.VerifiedCache: keys, expiry, bounds, revocation, the exact-match front, threads."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core import cache as cache_module
from broker.core.cache import FRONT_MIN_CHARS, FRONT_SUFFIX_CHARS, VerifiedCache, cache_key
from broker.visas.minting import record_of_jti

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


# ---------------------------------------------------------------------- evicting every visa of a record


def assert_indexes_agree(cache: VerifiedCache) -> None:
    """The head index holds exactly the dotted jtis of the jti index, which points at live entries."""
    dotted = {jti for jti in cache._by_jti if "." in jti}
    indexed: set[str] = set()
    for head, bucket in cache._by_head.items():
        members = {bucket} if isinstance(bucket, str) else bucket
        assert members, head
        assert all(jti.partition(".")[0] == head for jti in members)
        indexed |= members
    assert indexed == dotted
    for keys in cache._by_jti.values():
        for key in keys if isinstance(keys, list) else [keys]:
            assert key in cache._entries


def test_evict_jti_prefix_drops_every_verdict_that_used_a_visa_of_the_record() -> None:
    cache = VerifiedCache(20)
    cache.put_token("visa-a", SCOPE, "a", expires=1000, jtis=["rec-1.aaaa"], now=0)
    cache.put_token("visa-b", SCOPE, "b", expires=1000, jtis=["rec-1.bbbb"], now=0)
    cache.put_token("passport", "passport\x00", "p", expires=1000, jtis=["p-1", "rec-1.aaaa", "rec-2.cccc"], now=0)
    cache.put_token("other-record", SCOPE, "o", expires=1000, jtis=["rec-10.dddd"], now=0)
    cache.put_token("other-passport", "passport\x00", "q", expires=1000, jtis=["p-2", "rec-2.cccc"], now=0)
    cache.put_token("foreign", SCOPE, "f", expires=1000, jtis=["0f9c2e4d"], now=0)
    assert cache.evict_jti_prefix("rec-1") == 3
    assert [cache.get_token(t, SCOPE, now=1) for t in ("visa-a", "visa-b", "other-record", "foreign")] == [
        None,
        None,
        "o",
        "f",
    ]
    assert cache.get_token("passport", "passport\x00", now=1) is None
    assert cache.get_token("other-passport", "passport\x00", now=1) == "q"
    assert cache.evict_jti_prefix("rec-1") == 0
    assert cache.stats().revocations == 3
    assert "rec-1" not in cache._by_head
    assert_indexes_agree(cache)


@pytest.mark.parametrize(
    ("prefix", "dropped"),
    [
        pytest.param("rec-1", {"rec-1.x", "rec-1.y.z", "rec-1"}, id="record-id"),
        pytest.param("rec-1.", {"rec-1.x", "rec-1.y.z", "rec-1"}, id="trailing-separator-means-the-same"),
        pytest.param("rec-1.y", {"rec-1.y.z"}, id="dotted-record-id"),
        pytest.param("rec", {"rec.1"}, id="no-partial-part"),
        pytest.param("REC-1", set(), id="case-sensitive"),
        pytest.param("rec-1.x", {"rec-1.x"}, id="a-whole-jti"),
        pytest.param("0f9c2e4d", {"0f9c2e4d"}, id="undotted-jti"),
        pytest.param("0f9c", {"0f9c.2e"}, id="no-partial-undotted-jti"),
    ],
)
def test_evict_jti_prefix_matches_whole_parts_exactly(prefix: str, dropped: set[str]) -> None:
    jtis = ["rec-1.x", "rec-1.y.z", "rec-1", "rec-10.x", "rec-1x.y", "rec.1", "rec-1-.x", "0f9c2e4d", "0f9c.2e"]
    cache = VerifiedCache(20)
    for jti in jtis:
        cache.put_token(f"token-{jti}", SCOPE, jti, expires=1000, jtis=[jti], now=0)
    assert cache.evict_jti_prefix(prefix) == len(dropped)
    assert {jti for jti in jtis if cache.get_token(f"token-{jti}", SCOPE, now=1) is None} == dropped
    assert_indexes_agree(cache)


@pytest.mark.parametrize("bad", ["", "."])
def test_evict_jti_prefix_refuses_an_empty_prefix(bad: str) -> None:
    cache = VerifiedCache(10)
    cache.put_token("t", SCOPE, "v", expires=1000, jtis=[".x"], now=0)
    with pytest.raises(ValueError, match="empty"):
        cache.evict_jti_prefix(bad)
    with pytest.raises(TypeError):
        cache.evict_jti_prefix(None)  # type: ignore[arg-type]
    assert cache.get_token("t", SCOPE, now=1) == "v"


JTI_PARTS = st.text(alphabet="ab1-", min_size=0, max_size=3)
JTIS = st.lists(JTI_PARTS, min_size=1, max_size=3).map(".".join).filter(bool)


@settings(max_examples=150, deadline=None)
@given(entries=st.lists(st.lists(JTIS, min_size=1, max_size=3), min_size=1, max_size=8), prefix=JTIS)
def test_evict_jti_prefix_agrees_with_a_scan_and_with_record_of_jti(entries: list[list[str]], prefix: str) -> None:
    """Against a brute-force scan of every entry; and it drops every jti record_of_jti gives to the record."""
    cache = VerifiedCache(100)
    for index, jtis in enumerate(entries):
        cache.put_token(f"t{index}", SCOPE, index, expires=1000, jtis=jtis, now=0)
    record = prefix.removesuffix(".")
    if not record:
        with pytest.raises(ValueError):
            cache.evict_jti_prefix(prefix)
        return

    def relies(jti: str) -> bool:
        return jti == record or jti.startswith(record + ".")

    expected = {index for index, jtis in enumerate(entries) if any(relies(j) for j in jtis)}
    assert all(relies(j) for jtis in entries for j in jtis if record_of_jti(j) == record)
    assert cache.evict_jti_prefix(prefix) == len(expected)
    assert {i for i in range(len(entries)) if cache.get_token(f"t{i}", SCOPE, now=1) is None} == expected
    assert_indexes_agree(cache)


def test_head_index_follows_every_way_an_entry_leaves() -> None:
    cache = VerifiedCache(3)
    cache.put_token("a", SCOPE, 1, expires=10, jtis=["r1.a"], now=0)
    cache.put_token("b", SCOPE, 2, expires=1000, jtis=["r1.b", "r2.b"], now=0)
    cache.put_token("c", SCOPE, 3, expires=1000, jtis=["r3.c"], now=0)
    assert cache.get_token("a", SCOPE, now=20) is None  # expired on lookup
    assert_indexes_agree(cache)
    cache.put_token("d", SCOPE, 4, expires=1000, jtis=["r4.d"], now=0)
    cache.put_token("e", SCOPE, 5, expires=1000, jtis=["r5.e"], now=0)  # LRU drops b
    assert_indexes_agree(cache)
    assert "r1" not in cache._by_head and "r2" not in cache._by_head
    cache.put_token("c", SCOPE, 33, expires=1000, jtis=["r6.c"], now=0)  # replaced: r3 no longer relied on
    assert cache.evict_jti_prefix("r3") == 0
    assert cache.evict_jti("r4.d") == 1
    assert cache.purge_expired(now=2000) == 2
    assert cache._by_head == {} and cache._by_jti == {}
    cache.put_token("f", SCOPE, 6, expires=1000, jtis=["r7.f"], now=0)
    cache.clear()
    assert cache._by_head == {}
    assert cache.evict_jti_prefix("r7") == 0


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
                cache.put_token(token, SCOPE, token, expires=1000, jtis=[f"j{i % 50}", f"r{i % 7}.{n}-{i}"], now=0)
                value = cache.get_token(token, SCOPE, now=1)
                assert value in (None, token)
                if i % 37 == 0:
                    cache.evict_jti(f"j{(i + n) % 50}")
                if i % 41 == 0:
                    cache.evict_jti_prefix(f"r{(i + n) % 7}")
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
    # The jti index points only at live entries, and the head index holds exactly its dotted jtis.
    assert_indexes_agree(cache)
    assert stats.revocations > 0
