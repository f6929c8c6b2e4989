"""The Redis backend of the store kernel: state shared by many processes and machines (Redis >= 7.0).

Keys (every part percent-encoded, so no id can spell another key):

- ``<ns>:r:<kind>:<key>``: a record, a hash ``{v: value JSON, t: terms JSON}`` expiring with
  ``EXPIREAT`` at the record's ``expires_at``;
- ``<ns>:a:<kind>``: every key of a kind, a sorted set scored by expiry (``+inf`` for none), so
  ``scan`` reads only live members and expired ones are dropped by one ``ZREMRANGEBYSCORE``;
- ``<ns>:i:<kind>:<term>``: the keys indexed by one term, scored the same way;
- ``<ns>:c:<kind>:<key>``: an ``incr`` counter;
- ``<ns>:audit`` (sorted set by seq) and ``<ns>:audit-head`` (``"SEQ:HASH"``): the audit log.

Atomicity: each single write is one Lua script (a script runs alone on the server), which keeps
the record, its terms and the sorted sets in step. Scripts are sent with ``EVAL`` (the server
caches them by hash), never ``EVALSHA``: a script missing from a restarted server's cache would
make ``EVALSHA`` fail and the client retry, and a write is never sent twice. ``transact`` is optimistic: it ``WATCH``es
every record it reads (and the audit head when it appends), runs the function, then queues its
writes (the same scripts) and audit records in ``MULTI``/``EXEC``; if a watched key changed,
``EXEC`` does nothing and the function runs again, at most
:data:`~broker.store.kernel.MAX_TRANSACTION_ATTEMPTS` times. ``EXEC`` applies all or nothing,
and with AOF the whole block is logged as one, so a change, its audit record and its
revocation event commit together.

Audit chain: Python computes each record's SHA-256 (:mod:`broker.store.audit`); a single append
runs a script that appends only if the head is still the one the hash was computed from, else
returns the current head and Python recomputes (optimistic; there is no SHA-256 in Lua).

Failures: every connection error or timeout becomes StoreUnavailable within the configured
timeout (connect and read). Commands are never retried: a retried take whose first reply was
lost would hand out a code twice (THREAT-MODEL FT-07); the pool replaces dead connections on the
next call, so calls succeed again as soon as the server is back, with no restart.

Safety checks (``health``): ``maxmemory-policy`` other than ``noeviction`` makes the store NOT
ready, because eviction could forget a revocation or a used code (FT-06); ``appendonly no`` and
``appendfsync everysec`` are warnings (acknowledged writes could be lost in a crash).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, unquote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from broker.store.audit import GENESIS_HASH, build_record, decode_audit, encode_audit, normalize_event
from broker.store.base import AuditRecord, Conflict, Health, StoreError, StoreUnavailable
from broker.store.kernel import (
    MAX_TRANSACTION_ATTEMPTS,
    Item,
    Write,
    check_expiry,
    check_name,
    check_terms,
    dump_value,
    load_value,
)

log = logging.getLogger("broker.store.redis")

MAX_CONNECTIONS = 64
AUDIT_PAGE = 500
SCAN_PAGE = 500
MAX_OPTIMISTIC_ATTEMPTS = 100
RESTORE_BATCH = 1000

P = ParamSpec("P")
T = TypeVar("T")

# Scripts declare themselves with a shebang, so Redis refuses a writing script whole when it is over
# maxmemory (an undeclared script is checked only at its first write, and may then fill memory
# past the limit); a delete may run out of memory, since it frees some.
#
# Every script gets the namespace prefix and builds its keys from it. ARGV[1]: "<ns>:", ARGV[2]: the
# encoded kind, ARGV[3]: the encoded key (for key names), ARGV[4]: the key as given (the member of
# the kind and term sets, which find and scan hand back).

# PUT: ARGV[5] value JSON, ARGV[6] expires_at ('' for none), ARGV[7] terms JSON (encoded), ARGV[8]:
# '1' to write only when absent (add). Returns 1 when written, 0 when add found a live record.
PUT = """#!lua
local p, kind, ekey, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rk = p .. 'r:' .. kind .. ':' .. ekey
if ARGV[8] == '1' and redis.call('EXISTS', rk) == 1 then return 0 end
local old = redis.call('HGET', rk, 't')
if old then
  for _, t in ipairs(cjson.decode(old)) do redis.call('ZREM', p .. 'i:' .. kind .. ':' .. t, key) end
end
redis.call('DEL', rk)
redis.call('HSET', rk, 'v', ARGV[5], 't', ARGV[7])
local score = '+inf'
if ARGV[6] ~= '' then
  redis.call('EXPIREAT', rk, tonumber(ARGV[6]))
  score = ARGV[6]
end
redis.call('ZADD', p .. 'a:' .. kind, score, key)
for _, t in ipairs(cjson.decode(ARGV[7])) do redis.call('ZADD', p .. 'i:' .. kind .. ':' .. t, score, key) end
return 1
"""

# DELETE: returns {1, value} when a live record was removed, {0, ''} otherwise.
DELETE = """#!lua flags=allow-oom
local p, kind, ekey, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rk = p .. 'r:' .. kind .. ':' .. ekey
local d = redis.call('HMGET', rk, 'v', 't')
redis.call('ZREM', p .. 'a:' .. kind, key)
if not d[1] then return {0, ''} end
if d[2] then
  for _, t in ipairs(cjson.decode(d[2])) do redis.call('ZREM', p .. 'i:' .. kind .. ':' .. t, key) end
end
redis.call('DEL', rk)
return {1, d[1]}
"""

# INCR: ARGV[4] expires_at. The counter's expiry is set when it is created.
INCR = """#!lua
local ck = ARGV[1] .. 'c:' .. ARGV[2] .. ':' .. ARGV[3]
local n = redis.call('INCR', ck)
if n == 1 then redis.call('EXPIREAT', ck, tonumber(ARGV[4])) end
return n
"""

# KEYS: audit head, audit log. ARGV: expected head ('' for an empty log), seq, record JSON, new head.
# Returns {1, ''} or {0, current head}.
AUDIT_APPEND = """#!lua
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return {0, cur} end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[4])
return {1, ''}
"""


def _translate(exc: redis.RedisError) -> StoreError:
    """StoreUnavailable for anything that means "cannot be served now"; StoreError otherwise."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return StoreUnavailable(f"redis: {exc.__class__.__name__}: {exc}")
    text = str(exc)
    if isinstance(exc, redis.OutOfMemoryError):
        # noeviction at maxmemory: writes fail rather than security state being evicted (FT-06)
        return StoreUnavailable(f"redis: out of memory (OOM): {text}")
    if isinstance(exc, redis.ReadOnlyError) or text.startswith(("MISCONF", "LOADING", "BUSY", "NOREPLICAS")):
        return StoreUnavailable(f"redis: {exc.__class__.__name__}: {text}")
    return StoreError(f"redis: {exc.__class__.__name__}: {text}")


def _guarded(method: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise _translate(exc) from exc

    return wrapper


def _enc(part: str) -> str:
    return quote(part, safe="")


def _parse_head(head: str) -> tuple[int, str]:
    """The next seq and the previous hash from an audit head ``"SEQ:HASH"`` ('' when empty)."""
    if not head:
        return 1, GENESIS_HASH
    seq_text, _, prev_hash = head.partition(":")
    if not seq_text.isdigit() or len(prev_hash) != 64:
        raise StoreError("redis: the audit head is corrupt; run `ga4gh-broker audit verify`")
    return int(seq_text) + 1, prev_hash


def _expiry_score(score: float) -> int | None:
    return None if math.isinf(score) else int(score)


class _RedisTx:
    """One attempt of an optimistic transaction: reads WATCH what they read, writes are queued."""

    def __init__(self, kernel: RedisKernel, pipe: Any, now: int) -> None:
        self._kernel = kernel
        self._pipe = pipe
        self._now = now
        self.writes: list[tuple[str, str, str | None, int | None, tuple[str, ...]]] = []
        self.events: list[tuple[dict[str, Any], int]] = []

    @property
    def now(self) -> int:
        return self._now

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        rk = self._kernel._record_key(kind, key)
        self._pipe.watch(rk)
        value = self._pipe.hget(rk, "v")
        return load_value(value) if value is not None else None

    def find(self, kind: str, term: str) -> list[Item]:
        ik = self._kernel._term_key(kind, term)
        self._pipe.watch(ik)
        members = self._pipe.zrange(ik, f"({self._now}", "+inf", byscore=True, withscores=True)
        items = []
        for member, score in members:
            rk = self._kernel._record_key(kind, member)
            self._pipe.watch(rk)
            value = self._pipe.hget(rk, "v")
            if value is not None:
                items.append(Item(member, load_value(value), _expiry_score(score)))
        return sorted(items, key=lambda i: i.key)

    def put(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> None:
        check_name("kind", kind)
        check_name("key", key)
        self.writes.append((kind, key, dump_value(value), check_expiry(expires_at), check_terms(terms)))

    def delete(self, kind: str, key: str) -> None:
        self.writes.append((kind, key, None, None, ()))

    def audit(self, event: dict[str, Any], at: int | None = None) -> None:
        when = self._now if at is None else at
        if isinstance(when, bool) or not isinstance(when, int):
            raise ValueError(f"audit time 'at' must be integer seconds, got {type(when).__name__}")
        self.events.append((normalize_event(event), when))


class RedisKernel:
    """The store kernel on a Redis server (see the module docstring)."""

    backend = "redis"

    def __init__(
        self, url: str, namespace: str = "ga4gh-broker", timeout: float = 2.0, max_connections: int = MAX_CONNECTIONS
    ) -> None:
        check_name("redis namespace", namespace)
        self.namespace = namespace
        self.timeout = timeout
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        # decode_responses: every reply is text. redis-py's own types cannot say so, hence Any.
        self._redis: Any = redis.Redis(connection_pool=pool)
        self._prefix = f"{_enc(namespace)}:"
        self._audit_head: str | None = None  # last head seen; a guess, checked by the script
        self._logged_warnings: tuple[str, ...] = ()
        #: Test hook, as on SQLite: called with "before_exec" inside every transaction.
        self.fault: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ keys

    def _record_key(self, kind: str, key: str) -> str:
        return f"{self._prefix}r:{_enc(kind)}:{_enc(key)}"

    def _all_key(self, kind: str) -> str:
        return f"{self._prefix}a:{_enc(kind)}"

    def _term_key(self, kind: str, term: str) -> str:
        return f"{self._prefix}i:{_enc(kind)}:{_enc(term)}"

    def _audit_keys(self) -> list[str]:
        return [f"{self._prefix}audit-head", f"{self._prefix}audit"]

    def _put_args(
        self, kind: str, key: str, value: str, expires: int | None, terms: tuple[str, ...], only_if_absent: bool
    ) -> list[str]:
        encoded_terms = json.dumps([_enc(t) for t in terms])
        expiry = "" if expires is None else str(expires)
        return [self._prefix, _enc(kind), _enc(key), key, value, expiry, encoded_terms, "1" if only_if_absent else "0"]

    # ------------------------------------------------------------------ lifecycle

    @_guarded
    def health(self) -> Health:
        """Ping, then check the server keeps security state (see the module docstring)."""
        self._redis.ping()
        warnings: list[str] = []
        ok = True
        try:
            config = self._redis.config_get("maxmemory-policy")
            config.update(self._redis.config_get("appendonly"))
            config.update(self._redis.config_get("appendfsync"))
        except redis.ResponseError as exc:  # CONFIG disabled (managed Redis): say so
            warnings.append(f"cannot read server config ({exc}); check maxmemory-policy and appendonly yourself")
            config = {}
        policy = config.get("maxmemory-policy")
        if policy is not None and policy != "noeviction":
            ok = False
            warnings.append(
                f"maxmemory-policy is {policy}: Redis may evict revocations and used codes; "
                "set maxmemory-policy noeviction (store refused: not ready)"
            )
        if config.get("appendonly") == "no":
            warnings.append("appendonly is no: acknowledged writes are lost if Redis crashes; set appendonly yes")
        elif config.get("appendfsync") not in (None, "always"):
            warnings.append(
                f"appendfsync is {config.get('appendfsync')}: up to 1 s of acknowledged writes "
                "can be lost if the machine crashes; appendfsync always loses none"
            )
        if tuple(warnings) != self._logged_warnings:  # once per change, not on every readiness probe
            self._logged_warnings = tuple(warnings)
            for warning in warnings:
                (log.error if not ok else log.warning)("redis store: %s", warning)
        return Health(ok=ok, backend=self.backend, warnings=warnings)

    def close(self) -> None:
        """Close every pooled connection."""
        self._redis.close()
        self._redis.connection_pool.disconnect()

    # ------------------------------------------------------------------ reads

    @_guarded
    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        value = self._redis.hget(self._record_key(kind, key), "v")
        return load_value(value) if value is not None else None

    @_guarded
    def get_many(self, kind: str, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        if not keys:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hget(self._record_key(kind, key), "v")
        return [load_value(v) if v is not None else None for v in pipe.execute()]

    @_guarded
    def find(self, kind: str, term: str) -> list[Item]:
        now = int(time.time())
        members = self._redis.zrange(self._term_key(kind, term), f"({now}", "+inf", byscore=True, withscores=True)
        if not members:
            return []
        values = self.get_many(kind, [m for m, _ in members])
        items = [
            Item(member, value, _expiry_score(score))
            for (member, score), value in zip(members, values, strict=True)
            if value is not None
        ]
        return sorted(items, key=lambda i: i.key)

    def scan(self, kind: str) -> Iterator[Item]:
        """Every live record of ``kind``, in key order (read in pages of the kind's sorted set)."""
        now = int(time.time())
        keys = sorted(self._scan_keys(kind, now))
        for start in range(0, len(keys), SCAN_PAGE):
            page = keys[start : start + SCAN_PAGE]
            for (key, score), value in zip(page, self.get_many(kind, [k for k, _ in page]), strict=True):
                if value is not None:
                    yield Item(key, value, _expiry_score(score))

    @_guarded
    def _scan_keys(self, kind: str, now: int) -> list[tuple[str, float]]:
        return list(self._redis.zrange(self._all_key(kind), f"({now}", "+inf", byscore=True, withscores=True))

    @_guarded
    def kinds(self) -> list[str]:
        now = int(time.time())
        found = []
        for key in self._redis.scan_iter(match=f"{self._prefix}a:*", count=1000):
            if self._redis.zcount(key, f"({now}", "+inf"):
                found.append(unquote(key[len(self._prefix) + 2 :]))
        return sorted(found)

    # ------------------------------------------------------------------ single writes

    @_guarded
    def put(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> None:
        check_name("kind", kind)
        check_name("key", key)
        args = self._put_args(kind, key, dump_value(value), check_expiry(expires_at), check_terms(terms), False)
        self._redis.eval(PUT, 0, *args)

    @_guarded
    def add(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> bool:
        check_name("kind", kind)
        check_name("key", key)
        args = self._put_args(kind, key, dump_value(value), check_expiry(expires_at), check_terms(terms), True)
        return int(self._redis.eval(PUT, 0, *args)) == 1

    @_guarded
    def take(self, kind: str, key: str) -> dict[str, Any] | None:
        done, value = self._redis.eval(DELETE, 0, self._prefix, _enc(kind), _enc(key), key)
        return load_value(value) if int(done) == 1 else None

    @_guarded
    def delete(self, kind: str, key: str) -> bool:
        done, _ = self._redis.eval(DELETE, 0, self._prefix, _enc(kind), _enc(key), key)
        return int(done) == 1

    @_guarded
    def incr(self, kind: str, key: str, *, expires_at: int) -> int:
        check_name("kind", kind)
        check_name("key", key)
        expires = check_expiry(expires_at)
        return int(self._redis.eval(INCR, 0, self._prefix, _enc(kind), _enc(key), str(expires)))

    # ------------------------------------------------------------------ transactions

    def update(self, kind: str, key: str, fn: Callable[[dict[str, Any] | None], Write | None]) -> dict[str, Any] | None:
        def run(tx: _RedisTx) -> dict[str, Any] | None:
            outcome = fn(tx.get(kind, key))
            if outcome is None:
                tx.delete(kind, key)
                return None
            tx.put(kind, key, outcome.value, expires_at=outcome.expires_at, terms=outcome.terms)
            return outcome.value

        return self.transact(run)

    @_guarded
    def transact(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(tx)`` optimistically: WATCH what it reads, apply its writes in MULTI/EXEC."""
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    tx = _RedisTx(self, pipe, int(time.time()))
                    result = fn(tx)
                    records: list[AuditRecord] = []
                    if tx.events:
                        head_key, log_key = self._audit_keys()
                        pipe.watch(head_key)
                        head = pipe.get(head_key) or ""
                        seq, prev_hash = _parse_head(head)
                        for event, at in tx.events:
                            record = build_record(seq, at, event, prev_hash)
                            records.append(record)
                            seq, prev_hash = seq + 1, record.hash
                    if self.fault is not None:
                        self.fault("before_exec")
                    pipe.multi()
                    # EVAL, not EVALSHA: a script missing from the server's cache would fail alone at
                    # EXEC while the other commands of the block still applied.
                    for kind, key, value, expires, terms in tx.writes:
                        if value is None:
                            pipe.eval(DELETE, 0, self._prefix, _enc(kind), _enc(key), key)
                        else:
                            pipe.eval(PUT, 0, *self._put_args(kind, key, value, expires, terms, False))
                    if records:
                        for record in records:
                            pipe.zadd(log_key, {encode_audit(record): record.seq})
                        pipe.set(head_key, f"{records[-1].seq}:{records[-1].hash}")
                    if not tx.writes and not records:
                        pipe.reset()
                        return result
                    pipe.execute()
                    if records:
                        self._audit_head = f"{records[-1].seq}:{records[-1].hash}"
                    return result
                except redis.WatchError as exc:
                    # redis-py also reports a connection lost while watching (at EXEC, say) as a
                    # WatchError: the block may then have been applied, so it is never run again
                    # behind the caller's back; the caller gets 503 and may retry knowingly.
                    lost = exc.__cause__ or exc.__context__
                    if isinstance(lost, redis.ConnectionError | redis.TimeoutError) or "occurred while watching" in str(
                        exc
                    ):
                        raise StoreUnavailable(
                            "redis: connection lost during a transaction; it may have applied"
                        ) from exc
                    continue
        raise StoreUnavailable("redis: a transaction kept conflicting with concurrent writers; try again")

    # ------------------------------------------------------------------ audit log

    @_guarded
    def audit_append(self, event: dict[str, Any], at: int) -> AuditRecord:
        """Hash in Python against the head we believe in; the script appends only if it still is."""
        normalized = normalize_event(event)
        keys = self._audit_keys()
        head = self._audit_head
        if head is None:
            head = self._redis.get(keys[0]) or ""
        for _ in range(MAX_OPTIMISTIC_ATTEMPTS):
            seq, prev_hash = _parse_head(head)
            record = build_record(seq, at, normalized, prev_hash)
            new_head = f"{record.seq}:{record.hash}"
            done, current = self._redis.eval(AUDIT_APPEND, 2, *keys, head, record.seq, encode_audit(record), new_head)
            if int(done) == 1:
                self._audit_head = new_head
                return record
            head = current
        self._audit_head = None
        raise StoreUnavailable("redis: audit log kept moving under concurrent writers; try again")

    @_guarded
    def audit_last_seq(self) -> int:
        """The seq of the newest record, read from the head (0 for an empty log)."""
        head = self._redis.get(self._audit_keys()[0]) or ""
        return _parse_head(head)[0] - 1

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]:
        """Records with seq > after_seq in log order, read in pages (any log length)."""
        key = self._audit_keys()[1]
        offset = 0
        while True:
            try:
                page = self._redis.zrange(
                    key, f"({int(after_seq)}", "+inf", byscore=True, offset=offset, num=AUDIT_PAGE, withscores=True
                )
            except redis.RedisError as exc:
                raise _translate(exc) from exc
            for text, score in page:
                yield decode_audit(text, int(score))
            if len(page) < AUDIT_PAGE:
                return
            offset += len(page)

    # ------------------------------------------------------------------ transfer and retention

    @_guarded
    def terms_of(self, kind: str, key: str) -> tuple[str, ...]:
        """The index terms of a live record, sorted; () when it is absent or expired."""
        value, terms = self._redis.hmget(self._record_key(kind, key), ["v", "t"])
        if value is None or not terms:
            return ()
        try:
            encoded = json.loads(terms)
        except ValueError:
            raise StoreError("redis: stored terms are corrupt") from None
        return tuple(sorted(unquote(t) for t in encoded))

    @_guarded
    def audit_restore(self, records: Iterable[AuditRecord]) -> int:
        """Write records verbatim into an empty log (see the Kernel protocol).

        Written in pipelined batches and the head last: not one atomic step, so restore into a
        store nothing else writes to (an import). A restore cut short leaves records without a
        head, and a second attempt is refused as not empty.
        """
        head_key, log_key = self._audit_keys()
        if self._redis.exists(head_key) or self._redis.zcard(log_key):
            raise Conflict("redis: audit_restore needs an empty audit log, and this one has records")
        last: AuditRecord | None = None
        written = 0
        pipe = self._redis.pipeline(transaction=False)
        for record in records:
            if (
                isinstance(record.seq, bool)
                or not isinstance(record.seq, int)
                or record.seq <= (last.seq if last else 0)
            ):
                raise ValueError(
                    f"audit records to restore must have increasing positive seq; got {record.seq!r} "
                    f"after {last.seq if last else 0}"
                )
            pipe.zadd(log_key, {encode_audit(record): record.seq})
            last, written = record, written + 1
            if written % RESTORE_BATCH == 0:
                pipe.execute()
        if last is not None:
            pipe.set(head_key, f"{last.seq}:{last.hash}")
            self._audit_head = None
        pipe.execute()
        return written

    @_guarded
    def audit_truncate(self, through_seq: int) -> int:
        """Remove records with seq <= through_seq; the head and the newest record stay."""
        if isinstance(through_seq, bool) or not isinstance(through_seq, int) or through_seq < 0:
            raise ValueError(f"through_seq must be a non-negative integer, got {through_seq!r}")
        last = self.audit_last_seq()
        if through_seq >= last and through_seq > 0:
            raise ValueError(f"audit_truncate keeps the newest record: through_seq must be below {last}")
        if through_seq == 0:
            return 0
        return int(self._redis.zremrangebyscore(self._audit_keys()[1], "-inf", through_seq))

    def listen_audit(self, on_seq: Callable[[int], None]) -> None:
        """Not offered on Redis: None, and callers poll ``audit_records(after_seq)``."""
        return None

    # ------------------------------------------------------------------ housekeeping

    @_guarded
    def purge_expired(self) -> None:
        """Drop expired members from the kind and term sets (the records expire on their own)."""
        now = int(time.time())
        for pattern in (f"{self._prefix}a:*", f"{self._prefix}i:*"):
            for key in self._redis.scan_iter(match=pattern, count=1000):
                self._redis.zremrangebyscore(key, "-inf", now)
