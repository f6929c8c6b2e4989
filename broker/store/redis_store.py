"""The Redis backend: state shared by many processes and machines (redis-py, Redis >= 7.0).

Named ``redis_store`` so that ``import redis`` inside it can never mean itself.

Keys: ``<namespace>:<kind>:<part>...``, each part percent-encoded so that no id can
spell another key (``a:b`` + ``c`` and ``a`` + ``b:c`` stay apart).

Atomicity: single-use tickets are taken with GETDEL; ``add_ticket`` is SET NX; refresh-token
use, family revocation, identity linking and audit appends are Lua scripts (one script runs
alone on the server); a grant replacement moves its index entries under WATCH/MULTI.

Lifetimes: Redis expiry (EX for ttl, EXAT for absolute times), so nothing expired is returned
and nothing expired is kept.

Audit chain: Python computes each record's SHA-256 (``broker.store.audit``); a Lua script
appends it only if the head is still the one the hash was computed from, else returns the
current head and Python recomputes (optimistic; no SHA-1 in Lua).

Failures: every connection error or timeout becomes StoreUnavailable within the configured
timeout (connect and read). Commands are never retried (a retried GETDEL whose first reply
was lost would hand out a code twice, FT-07); the pool replaces dead connections on the next
call, so calls succeed again as soon as the server is back, with no restart.

Safety checks (``health``): ``maxmemory-policy`` other than ``noeviction`` makes the store
NOT ready (ok False, /readyz 503) because eviction could forget a revocation or a used code
(FT-06); ``appendonly no`` and ``appendfsync everysec`` are warnings (acknowledged writes
could be lost in a crash; DESIGN rule 7 wants AOF with ``appendfsync always``).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from broker.store import check_name, check_ttl, decode_record, encode_record, family_marker_until
from broker.store.audit import GENESIS_HASH, build_record, decode_audit, encode_audit, normalize_event
from broker.store.base import (
    AuditRecord,
    Client,
    Conflict,
    Consent,
    Grant,
    Health,
    Identity,
    IdentityLink,
    KeyRecord,
    RefreshToken,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger("broker.store.redis")

MAX_CONNECTIONS = 64
AUDIT_PAGE = 500
MAX_OPTIMISTIC_ATTEMPTS = 100

P = ParamSpec("P")
T = TypeVar("T")

# KEYS: link, links-of set. ARGV: identity id, link JSON, member.
LINK_IDENTITY = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, d = pcall(cjson.decode, cur)
  if not ok or d['identity_id'] ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""

# KEYS: token hash, family set, family-revoked marker. ARGV: data JSON, used flag, expires_at.
PUT_REFRESH_TOKEN = """
local exp = tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 then
  local m = redis.call('EXPIRETIME', KEYS[3])
  if m >= 0 and m < exp then redis.call('EXPIREAT', KEYS[3], exp) end
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'used', ARGV[2])
redis.call('EXPIREAT', KEYS[1], exp)
redis.call('SADD', KEYS[2], KEYS[1])
local f = redis.call('EXPIRETIME', KEYS[2])
if f < exp then redis.call('EXPIREAT', KEYS[2], exp) end
return 1
"""

# KEYS: token hash. Returns {data, used-before} or nil; marks it used.
USE_REFRESH_TOKEN = """
local d = redis.call('HMGET', KEYS[1], 'data', 'used')
if not d[1] then return nil end
redis.call('HSET', KEYS[1], 'used', '1')
return d
"""

# KEYS: family set, family-revoked marker. ARGV: the earliest end of the marker.
# Returns how many live tokens were deleted.
REVOKE_FAMILY = """
local deadline = tonumber(ARGV[1])
local f = redis.call('EXPIRETIME', KEYS[1])
if f > deadline then deadline = f end
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do n = n + redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
local m = redis.call('EXPIRETIME', KEYS[2])
if m > deadline then deadline = m end
redis.call('SET', KEYS[2], '1', 'EXAT', deadline)
return n
"""

# KEYS: audit head, audit log (sorted set by seq). ARGV: expected head ('' for an empty
# log), seq, record JSON, new head. Returns {1, ''} or {0, current head}.
AUDIT_APPEND = """
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


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _parse_head(head: str) -> tuple[int, str]:
    """The next seq and the previous hash from an audit head ``"SEQ:HASH"`` ('' when empty)."""
    if not head:
        return 1, GENESIS_HASH
    seq_text, _, prev_hash = head.partition(":")
    if not seq_text.isdigit() or len(prev_hash) != 64:
        raise StoreError("redis: the audit head is corrupt; run `ga4gh-broker audit verify`")
    return int(seq_text) + 1, prev_hash


class RedisStore:
    """The ``Store`` protocol on a Redis server (see the module docstring)."""

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
        self._redis = redis.Redis(connection_pool=pool)
        self._link_identity = self._redis.register_script(LINK_IDENTITY)
        self._put_refresh_token = self._redis.register_script(PUT_REFRESH_TOKEN)
        self._use_refresh_token = self._redis.register_script(USE_REFRESH_TOKEN)
        self._revoke_family = self._redis.register_script(REVOKE_FAMILY)
        self._audit_append = self._redis.register_script(AUDIT_APPEND)
        self._audit_head: str | None = None  # last head seen; a guess, checked by the script
        self._logged_warnings: tuple[str, ...] = ()

    def _key(self, *parts: str) -> str:
        return ":".join([self.namespace, *(quote(p, safe="") for p in parts)])

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

    # ------------------------------------------------------------------ identities

    @_guarded
    def put_identity(self, identity: Identity) -> None:
        check_name("identity id", identity.id)
        self._redis.set(self._key("identity", identity.id), encode_record(identity))

    @_guarded
    def get_identity(self, identity_id: str) -> Identity | None:
        text = self._redis.get(self._key("identity", identity_id))
        return decode_record(Identity, text) if text is not None else None

    @_guarded
    def link_identity(self, link: IdentityLink) -> None:
        check_name("identity id", link.identity_id)
        check_name("upstream iss", link.iss)
        check_name("upstream sub", link.sub)
        member = json.dumps([link.iss, link.sub])
        linked = self._link_identity(
            keys=[self._key("link", link.iss, link.sub), self._key("links-of", link.identity_id)],
            args=[link.identity_id, encode_record(link), member],
        )
        if not linked:
            raise Conflict("this upstream identity {iss, sub} is already linked to another account")

    @_guarded
    def find_link(self, iss: str, sub: str) -> IdentityLink | None:
        text = self._redis.get(self._key("link", iss, sub))
        return decode_record(IdentityLink, text) if text is not None else None

    @_guarded
    def links_of(self, identity_id: str) -> list[IdentityLink]:
        members = self._redis.smembers(self._key("links-of", identity_id))
        keys = [self._key("link", *json.loads(m)) for m in members]
        links = [decode_record(IdentityLink, t) for t in self._mget(keys)]
        return sorted(
            (lk for lk in links if lk.identity_id == identity_id), key=lambda lk: (lk.linked_at, lk.iss, lk.sub)
        )

    def _mget(self, keys: list[str]) -> list[str]:
        """Values of the keys that exist, in order (none when ``keys`` is empty)."""
        if not keys:
            return []
        return [v for v in self._redis.mget(keys) if v is not None]

    # ------------------------------------------------------------------ grants

    @_guarded
    def put_grant(self, grant: Grant) -> None:
        """Insert or replace by id; index sets follow the grant atomically (WATCH/MULTI)."""
        check_name("grant id", grant.id)
        key = self._key("grant", grant.id)
        for _ in range(MAX_OPTIMISTIC_ATTEMPTS):
            with self._redis.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    old_text = pipe.get(key)
                    pipe.multi()
                    if old_text is not None:
                        old = decode_record(Grant, old_text)
                        pipe.srem(self._key("grants-of", old.identity_id), grant.id)
                        pipe.srem(self._key("grants-for", old.dataset), grant.id)
                    pipe.set(key, encode_record(grant))
                    pipe.sadd(self._key("grants-of", grant.identity_id), grant.id)
                    pipe.sadd(self._key("grants-for", grant.dataset), grant.id)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue
        raise StoreUnavailable("redis: grant kept changing under concurrent writers; try again")

    @_guarded
    def get_grant(self, grant_id: str) -> Grant | None:
        text = self._redis.get(self._key("grant", grant_id))
        return decode_record(Grant, text) if text is not None else None

    def _grants_in(self, index: str, value: str, field: str) -> list[Grant]:
        ids = self._redis.smembers(self._key(index, value))
        grants = [decode_record(Grant, t) for t in self._mget([self._key("grant", i) for i in ids])]
        return sorted((g for g in grants if getattr(g, field) == value), key=lambda g: (g.granted_at, g.id))

    @_guarded
    def grants_of(self, identity_id: str) -> list[Grant]:
        return self._grants_in("grants-of", identity_id, "identity_id")

    @_guarded
    def grants_for_dataset(self, dataset: str) -> list[Grant]:
        return self._grants_in("grants-for", dataset, "dataset")

    # ------------------------------------------------------------------ clients

    @_guarded
    def put_client(self, client: Client) -> None:
        check_name("client id", client.client_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._key("client", client.client_id), encode_record(client))
        pipe.sadd(self._key("clients"), client.client_id)
        pipe.execute()

    @_guarded
    def get_client(self, client_id: str) -> Client | None:
        text = self._redis.get(self._key("client", client_id))
        return decode_record(Client, text) if text is not None else None

    @_guarded
    def list_clients(self) -> list[Client]:
        ids = sorted(self._redis.smembers(self._key("clients")))
        return [decode_record(Client, t) for t in self._mget([self._key("client", i) for i in ids])]

    @_guarded
    def delete_client(self, client_id: str) -> bool:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._key("client", client_id))
        pipe.srem(self._key("clients"), client_id)
        deleted, _ = pipe.execute()
        return bool(deleted)

    # ------------------------------------------------------------------ single-use tickets

    @_guarded
    def put_ticket(self, kind: str, key: str, value: dict[str, Any], ttl: int) -> None:
        check_name("ticket kind", kind)
        check_name("ticket key", key)
        check_ttl(ttl)
        self._redis.set(self._key("ticket", kind, key), _dumps(value), ex=ttl)

    @_guarded
    def add_ticket(self, kind: str, key: str, value: dict[str, Any], ttl: int) -> bool:
        check_name("ticket kind", kind)
        check_name("ticket key", key)
        check_ttl(ttl)
        return bool(self._redis.set(self._key("ticket", kind, key), _dumps(value), ex=ttl, nx=True))

    @_guarded
    def consume_ticket(self, kind: str, key: str) -> dict[str, Any] | None:
        text = self._redis.getdel(self._key("ticket", kind, key))
        return json.loads(text) if text is not None else None

    @_guarded
    def peek_ticket(self, kind: str, key: str) -> dict[str, Any] | None:
        text = self._redis.get(self._key("ticket", kind, key))
        return json.loads(text) if text is not None else None

    # ------------------------------------------------------------------ refresh tokens

    @_guarded
    def put_refresh_token(self, token: RefreshToken) -> None:
        """Insert or replace; a token of a revoked family is not kept (revoked at birth)."""
        check_name("token hash", token.token_hash)
        check_name("family id", token.family_id)
        if token.expires_at <= int(time.time()):
            return  # already expired: it could never be returned, so it is not kept
        self._put_refresh_token(
            keys=[
                self._key("rt", token.token_hash),
                self._key("rt-family", token.family_id),
                self._key("rt-family-revoked", token.family_id),
            ],
            args=[encode_record(token), "1" if token.used else "0", int(token.expires_at)],
        )

    @_guarded
    def use_refresh_token(self, token_hash: str) -> RefreshToken | None:
        found = self._use_refresh_token(keys=[self._key("rt", token_hash)])
        if not found:
            return None
        data, used = found
        return replace(decode_record(RefreshToken, data), used=used == "1")

    @_guarded
    def revoke_family(self, family_id: str) -> int:
        """Delete the family's tokens and mark it revoked; the number of live tokens removed."""
        check_name("family id", family_id)
        floor = family_marker_until(int(time.time()), None)
        return int(
            self._revoke_family(
                keys=[self._key("rt-family", family_id), self._key("rt-family-revoked", family_id)], args=[floor]
            )
        )

    @_guarded
    def family_revoked(self, family_id: str) -> bool:
        return bool(self._redis.exists(self._key("rt-family-revoked", family_id)))

    # ------------------------------------------------------------------ sessions

    @_guarded
    def put_session(self, session_id: str, data: dict[str, Any], ttl: int) -> None:
        check_name("session id", session_id)
        check_ttl(ttl)
        self._redis.set(self._key("session", session_id), _dumps(data), ex=ttl)

    @_guarded
    def get_session(self, session_id: str) -> dict[str, Any] | None:
        text = self._redis.get(self._key("session", session_id))
        return json.loads(text) if text is not None else None

    @_guarded
    def delete_session(self, session_id: str) -> None:
        self._redis.delete(self._key("session", session_id))

    # ------------------------------------------------------------------ consents

    @_guarded
    def put_consent(self, consent: Consent) -> None:
        check_name("identity id", consent.identity_id)
        check_name("client id", consent.client_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._key("consent", consent.identity_id, consent.client_id), encode_record(consent))
        pipe.sadd(self._key("consents-of", consent.identity_id), consent.client_id)
        pipe.execute()

    @_guarded
    def get_consent(self, identity_id: str, client_id: str) -> Consent | None:
        text = self._redis.get(self._key("consent", identity_id, client_id))
        return decode_record(Consent, text) if text is not None else None

    @_guarded
    def consents_of(self, identity_id: str) -> list[Consent]:
        clients = sorted(self._redis.smembers(self._key("consents-of", identity_id)))
        return [decode_record(Consent, t) for t in self._mget([self._key("consent", identity_id, c) for c in clients])]

    @_guarded
    def delete_consent(self, identity_id: str, client_id: str) -> bool:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._key("consent", identity_id, client_id))
        pipe.srem(self._key("consents-of", identity_id), client_id)
        deleted, _ = pipe.execute()
        return bool(deleted)

    # ------------------------------------------------------------------ revoked token ids

    @_guarded
    def revoke_token_id(self, jti: str, expires_at: int) -> None:
        """Remember ``jti`` as revoked until ``expires_at`` (pass the token's exp plus leeway)."""
        check_name("token id", jti)
        expires_at = int(expires_at)
        if expires_at <= int(time.time()):
            return  # the token is past its own end already
        key = self._key("revoked-jti", jti)
        # GT keeps the later end when a jti is revoked twice; NX covers the first time.
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(key, "1", nx=True, exat=expires_at)
        pipe.expireat(key, expires_at, gt=True)
        pipe.execute()

    @_guarded
    def is_token_revoked(self, jti: str) -> bool:
        return bool(self._redis.exists(self._key("revoked-jti", jti)))

    # ------------------------------------------------------------------ signing keys

    @_guarded
    def put_key(self, key: KeyRecord) -> None:
        check_name("kid", key.kid)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._key("key", key.kid), encode_record(key))
        pipe.sadd(self._key("keys"), key.kid)
        pipe.execute()

    @_guarded
    def list_keys(self) -> list[KeyRecord]:
        kids = self._redis.smembers(self._key("keys"))
        keys = [decode_record(KeyRecord, t) for t in self._mget([self._key("key", k) for k in kids])]
        return sorted(keys, key=lambda k: (k.created_at, k.kid))

    @_guarded
    def delete_key(self, kid: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._key("key", kid))
        pipe.srem(self._key("keys"), kid)
        pipe.execute()

    # ------------------------------------------------------------------ audit log

    @_guarded
    def audit_append(self, event: dict[str, Any], at: int) -> AuditRecord:
        """Hash in Python against the head we believe in; the script appends only if it still is."""
        normalized = normalize_event(event)
        keys = [self._key("audit-head"), self._key("audit")]
        head = self._audit_head
        if head is None:
            head = self._redis.get(keys[0]) or ""
        for _ in range(MAX_OPTIMISTIC_ATTEMPTS):
            seq, prev_hash = _parse_head(head)
            record = build_record(seq, at, normalized, prev_hash)
            new_head = f"{record.seq}:{record.hash}"
            done, current = self._audit_append(keys=keys, args=[head, record.seq, encode_audit(record), new_head])
            if int(done) == 1:
                self._audit_head = new_head
                return record
            head = current
        self._audit_head = None
        raise StoreUnavailable("redis: audit log kept moving under concurrent writers; try again")

    @_guarded
    def audit_last_seq(self) -> int:
        """The seq of the newest record, read from the head (0 for an empty log)."""
        head = self._redis.get(self._key("audit-head")) or ""
        return _parse_head(head)[0] - 1

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]:
        """Records with seq > after_seq in log order, read in pages (any log length)."""
        key = self._key("audit")
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
