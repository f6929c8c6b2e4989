"""The verified-token cache: what a cold verification concluded, kept until the token's ``exp``.

Why: a cold check of a 10-visa passport costs 11 signature verifications; a hit costs a
lookup (BASELINE.md: caching decides the request rate). The rules that keep it safe
(DESIGN rule 6, "a cache never outlives what it caches"):

- Keyed by the SHA-256 of the exact token bytes together with a *scope* naming what was
  concluded: the kind of check, the trust configuration's version and, for passports, the
  audience (:func:`cache_key`). Any other spelling of a token, a changed trust
  configuration or another audience is a miss and is verified cold.
- An entry ends at the ``expires`` its writer gives (the token's ``exp``, or the earliest
  ``exp`` of everything a passport result relies on), optionally earlier (``max_ttl_seconds``).
- Revocation evicts: each entry is indexed by the ``jti`` values it relies on, and
  :meth:`VerifiedCache.evict_jti` drops them all. Hits do not consult a revocation list;
  whoever learns of a revocation calls ``evict_jti``. A visa we mint from a record (a DAC
  grant, registered access) has ``jti`` = ``<record id>.<random>``, and revoking the record
  revokes every such visa: :meth:`VerifiedCache.evict_jti_prefix` drops every entry relying
  on any of them, found through a second index keyed by the text before a jti's first ``.``.
- Bounded: at most ``max_entries`` entries, least recently used evicted first.
- Thread-safe: one lock around every read and write; counters for hits, misses, evictions.

The exact-match front (why it exists and why it is as safe as the SHA-256 index): a hit
must cost about 1/100 of a cold check, and a cold 10-visa RS256 passport (~12 KB) is
checked in ~0.6 ms at the crypto limit, while SHA-256 over 12 KB alone takes 5-8 us. So
:meth:`VerifiedCache.get_token` first looks the token up in a small map keyed by the scope
and the token's last 64 characters (its signature) whose value is the full token text and
its SHA-256 key; it is a hit only if the stored text *equals* the presented token (a
memory compare), and it then reads the SHA-256-keyed entry, which alone holds results,
expiry and revocation. A front entry whose main entry is gone is a miss. Colliding
suffixes only cost misses. The front is bounded by entries and by the characters of the
token texts it holds.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Characters of a token (its signature end) that key the exact-match front.
FRONT_SUFFIX_CHARS = 64
#: Tokens shorter than this skip the front: SHA-256 of a single visa costs about 1 us.
FRONT_MIN_CHARS = 2048
#: Largest number of front entries, and of token characters they may hold.
FRONT_MAX_ENTRIES = 65_536
FRONT_MAX_CHARS = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the cache was made."""

    entries: int
    max_entries: int
    hits: int
    misses: int
    evictions: int  # dropped to stay under max_entries
    expirations: int  # dropped because their time was up
    revocations: int  # dropped by evict_jti


def cache_key(token: str, scope: str) -> bytes:
    """SHA-256 over ``scope`` and the exact token bytes: the 32-byte key of an entry.

    ``scope`` says what was concluded about the token and under which trust configuration
    (e.g. ``"visa\\x00<trust version>\\x00"``), so a result is only reused for the same
    question about the same bytes.
    """
    digest = hashlib.sha256(scope.encode("utf-8", "surrogatepass") + b"\x00")
    digest.update(token.encode("utf-8", "surrogatepass"))
    return digest.digest()


Entry = tuple[Any, float, "str | tuple[str, ...]"]  # (value, expires, one jti or several)


def _jtis(ids: str | tuple[str, ...]) -> tuple[str, ...]:
    return (ids,) if type(ids) is str else ids  # type: ignore[return-value]


class VerifiedCache:
    """A bounded LRU map from :func:`cache_key` to a verified result, ending at an expiry."""

    def __init__(self, max_entries: int, max_ttl_seconds: float | None = None) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be greater than 0")
        if max_ttl_seconds is not None and max_ttl_seconds <= 0:
            raise ValueError("max_ttl_seconds must be greater than 0")
        self.max_entries = max_entries
        self.max_ttl_seconds = max_ttl_seconds
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        # jti -> the key relying on it, or a list of keys when several do
        self._by_jti: dict[str, bytes | list[bytes]] = {}
        # For jtis containing a '.': the text before the first '.' -> that jti, or a set of them
        # (the jtis in _by_jti, so an entry's removal keeps both in step)
        self._by_head: dict[str, str | set[str]] = {}
        # scope + suffix -> (token, key); insertion ordered, oldest dropped first
        self._front: dict[str, tuple[str, bytes]] = {}
        self._front_chars = 0
        self._front_limit = min(max_entries, FRONT_MAX_ENTRIES)
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._revocations = 0

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ by token

    def get_token(self, token: str, scope: str, now: float) -> Any | None:
        """The value cached for this exact token under ``scope``, if still valid at ``now``."""
        if len(token) < FRONT_MIN_CHARS:
            return self.get(cache_key(token, scope), now)
        front_key = scope + token[-FRONT_SUFFIX_CHARS:]
        with self._lock:
            front = self._front.get(front_key)
            if front is not None and front[0] == token:
                return self._get(front[1], now)
        key = cache_key(token, scope)
        with self._lock:
            value = self._get(key, now)
            if value is not None:
                self._remember(front_key, token, key)
            return value

    def put_token(
        self, token: str, scope: str, value: Any, expires: float, jtis: Iterable[str | None] = (), now: float = 0.0
    ) -> bool:
        """Cache ``value`` for this exact token under ``scope`` (see :meth:`put`)."""
        key = cache_key(token, scope)
        if not self.put(key, value, expires, jtis, now):
            return False
        if len(token) >= FRONT_MIN_CHARS:
            with self._lock:
                if key in self._entries:  # not evicted at once by a tiny max_entries
                    self._remember(scope + token[-FRONT_SUFFIX_CHARS:], token, key)
        return True

    # ------------------------------------------------------------------ by key

    def get(self, key: bytes, now: float) -> Any | None:
        """The value stored under ``key`` if its time is not up at ``now``, else ``None``."""
        with self._lock:
            return self._get(key, now)

    def put(self, key: bytes, value: Any, expires: float, jtis: Iterable[str | None] = (), now: float = 0.0) -> bool:
        """Store ``value`` until ``expires`` (epoch seconds); ``False`` if that is not after ``now``.

        ``jtis`` are the token ids the value relies on (for :meth:`evict_jti`).
        """
        if self.max_ttl_seconds is not None:
            expires = min(expires, now + self.max_ttl_seconds)
        if expires <= now:
            return False
        unique = tuple(dict.fromkeys(j for j in jtis if j))
        ids: str | tuple[str, ...] = unique[0] if len(unique) == 1 else unique  # one str saves a tuple
        with self._lock:
            old = self._entries.get(key)
            if old is not None:
                self._remove(key, old)
            self._entries[key] = (value, expires, ids)
            for jti in _jtis(ids):
                keys = self._by_jti.get(jti)
                if keys is None:
                    self._by_jti[jti] = key
                    if "." in jti:
                        self._index_head(jti)
                elif type(keys) is list:
                    keys.append(key)
                else:
                    self._by_jti[jti] = [keys, key]  # type: ignore[list-item]
            while len(self._entries) > self.max_entries:
                oldest, entry = self._entries.popitem(last=False)
                self._unindex(oldest, _jtis(entry[2]))
                self._evictions += 1
        return True

    def evict_jti(self, jti: str) -> int:
        """Drop every entry that relies on token id ``jti``; the number dropped."""
        with self._lock:
            dropped = self._evict(jti)
            self._revocations += dropped
            return dropped

    def evict_jti_prefix(self, prefix: str) -> int:
        """Drop every entry relying on a jti that is ``prefix`` or starts with ``prefix + "."``; the number dropped.

        For revoking a record: our visas minted from record ``r`` carry ``jti`` ``r.<random>``,
        so ``evict_jti_prefix(r)`` drops every cached verdict (visa or whole passport) that used
        any of them. ``prefix`` is matched on whole ``.``-separated parts, exactly and
        case-sensitively: ``"rec-1"`` drops ``rec-1.x`` and ``rec-1.y.z`` but not ``rec-10.x``.
        A trailing ``.`` is allowed (``"rec-1."`` means the same). It may itself contain ``.``
        (``"a.b"`` drops ``a.b.c``), so it also agrees with ``record_of_jti`` (text before the
        *last* ``.``) for record ids containing dots. Erring this way only ever drops more.

        Cost: one index lookup for the part of ``prefix`` before its first ``.`` and a test of
        each cached jti sharing that part (the visas of that one record), never a scan of the
        cache. Raises ``ValueError`` for an empty prefix (it would name no record).
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, not {type(prefix).__name__}")
        record = prefix[:-1] if prefix.endswith(".") else prefix
        if not record:
            raise ValueError("jti prefix must name a record: it is empty")
        head, dot, _ = record.partition(".")
        boundary = record + "."
        with self._lock:
            bucket = self._by_head.get(head)
            named = () if bucket is None else (bucket,) if type(bucket) is str else tuple(bucket)
            jtis = [jti for jti in named if jti == record or jti.startswith(boundary)]
            if not dot and record in self._by_jti:
                jtis.append(record)  # a jti without '.' is not in the head index
            dropped = 0
            for jti in jtis:
                dropped += self._evict(jti)
            self._revocations += dropped
            return dropped

    def purge_expired(self, now: float) -> int:
        """Drop every entry whose time is up (entries are also dropped lazily on lookup)."""
        with self._lock:
            stale = [(k, e) for k, e in self._entries.items() if now >= e[1]]
            for key, entry in stale:
                self._remove(key, entry)
            self._expirations += len(stale)
            return len(stale)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_jti.clear()
            self._by_head.clear()
            self._front.clear()
            self._front_chars = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                len(self._entries),
                self.max_entries,
                self._hits,
                self._misses,
                self._evictions,
                self._expirations,
                self._revocations,
            )

    # ------------------------------------------------------------------ internals (lock held)

    def _evict(self, jti: str) -> int:
        """Drop the entries relying on ``jti`` (no counters); the number dropped."""
        keys = self._by_jti.pop(jti, None)
        if keys is None:
            return 0
        self._unindex_head(jti)
        dropped = 0
        for key in keys if type(keys) is list else (keys,):
            entry = self._entries.get(key)  # type: ignore[arg-type]
            if entry is not None:
                self._remove(key, entry)  # type: ignore[arg-type]
                dropped += 1
        return dropped

    def _index_head(self, jti: str) -> None:
        head, dot, _ = jti.partition(".")
        if not dot:
            return
        bucket = self._by_head.get(head)
        if bucket is None:
            self._by_head[head] = jti
        elif type(bucket) is set:
            bucket.add(jti)
        else:
            self._by_head[head] = {bucket, jti}  # type: ignore[arg-type]

    def _unindex_head(self, jti: str) -> None:
        head, dot, _ = jti.partition(".")
        if not dot:
            return
        bucket = self._by_head.get(head)
        if bucket is None:
            return
        if type(bucket) is set:
            bucket.discard(jti)
            if len(bucket) == 1:
                self._by_head[head] = next(iter(bucket))
        elif bucket == jti:
            del self._by_head[head]

    def _get(self, key: bytes, now: float) -> Any | None:
        entry = self._entries.get(key)
        if entry is not None:
            if now < entry[1]:
                self._entries.move_to_end(key)
                self._hits += 1
                return entry[0]
            self._remove(key, entry)
            self._expirations += 1
        self._misses += 1
        return None

    def _remember(self, front_key: str, token: str, key: bytes) -> None:
        old = self._front.pop(front_key, None)
        if old is not None:
            self._front_chars -= len(old[0])
        self._front[front_key] = (token, key)
        self._front_chars += len(token)
        while self._front and (len(self._front) > self._front_limit or self._front_chars > FRONT_MAX_CHARS):
            dropped = self._front.pop(next(iter(self._front)))
            self._front_chars -= len(dropped[0])

    def _remove(self, key: bytes, entry: Entry) -> None:
        del self._entries[key]
        self._unindex(key, _jtis(entry[2]))

    def _unindex(self, key: bytes, jtis: tuple[str, ...]) -> None:
        for jti in jtis:
            keys = self._by_jti.get(jti)
            if keys is None:
                continue
            if type(keys) is list:
                try:
                    keys.remove(key)
                except ValueError:
                    continue
                if len(keys) == 1:
                    self._by_jti[jti] = keys[0]
            elif keys == key:
                del self._by_jti[jti]
                self._unindex_head(jti)
