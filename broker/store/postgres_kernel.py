"""The PostgreSQL backend of the store kernel: the system of record for a broker on several machines.

Connections: a psycopg 3 pool per process (``psycopg_pool``; a forked child opens its own and
never touches its parent's). Each session is configured once when it is opened:
``search_path`` to the broker's schema, ``synchronous_commit = on`` (so COMMIT returns only when
the WAL is flushed, and, when the server has synchronous standbys, flushed on them too: a write
is acknowledged only then), ``statement_timeout`` a little under the store timeout, and
``idle_in_transaction_session_timeout`` so that a frozen client cannot hold the audit head lock.
A connection idle for a few seconds is checked (an empty query) before it is handed out, so one
that died with its server is replaced instead of failing the call.

Deadline: every call has ``timeout`` seconds from its start, spent waiting for a connection
(``getconn(timeout)``), then in statements. The server cancels a slow statement itself
(``statement_timeout``); for a server that does not answer at all (frozen, partitioned), a
watchdog thread shuts the connection's socket down at the deadline, so the waiting call fails at
once. Either way the caller gets :class:`~broker.store.base.StoreUnavailable`, and the cut
connection is discarded by the pool. No statement is ever re-sent after an error: a ``take``
whose reply was lost may have consumed the record, and must not hand it out a second time.

Transactions: single writes (``put``, ``add``, ``take``, ``delete``, ``incr``) are short READ
COMMITTED transactions whose first statement locks the record's row (an upsert or a delete), so
writers of one record queue behind each other and exactly one of concurrent ``add``/``take``
calls wins. ``transact`` (and ``update``) run in ``SERIALIZABLE`` isolation: PostgreSQL's
serializable snapshot isolation aborts one of two transactions whose reads and writes could not
have happened one after the other (SQLSTATE 40001, or a deadlock 40P01); the kernel then rolls
back and runs the function again, at most ``MAX_TRANSACTION_ATTEMPTS`` times within the
deadline. Such an abort is reported before anything is committed, so running again is safe.
Writes are queued while the function runs and applied just before COMMIT, so reads inside a
transaction see the state before it.

Audit: an append locks the single ``audit_head`` row (``SELECT ... FOR UPDATE``), computes the
SHA-256 chain in Python (:mod:`broker.store.audit`), inserts the records, moves the head and
sends ``NOTIFY <schema>_audit, '<seq>'`` for each record, all in the appending transaction.
Appenders in every process wait for the head lock in turn, so the chain has no gap and no fork,
and commit order is seq order. :meth:`PostgresKernel.listen_audit` turns the notifications back
into calls (revocation fan-out without polling).

Expired rows are never returned (every read compares the expiry with the clock) and are
deleted in batches by a background thread at most once per :data:`PURGE_INTERVAL` per process,
started by a write.

Names (kind, key, term) are stored as their UTF-8 bytes and identified by SHA-256 (see
``migrations/0001_kernel.sql``), so any name the kernel contract allows, including one of 4096
characters, is stored and ordered exactly as on the other backends.

Schema: made only by :func:`migrate` (``ga4gh-broker store migrate``), from the versioned SQL
files in :mod:`broker.store.migrations`. Opening the kernel checks the version and refuses a
missing, older or newer schema with a one-line StoreError naming that command.

Health: not ready on a replica (``pg_is_in_recovery()``) or a read-only server, or with a schema
at another version; warnings when ``synchronous_commit`` or ``fsync`` is off. Point the URL at
every node with ``target_session_attrs=read-write``
(``postgresql://h1:5432,h2:5432/broker?target_session_attrs=read-write``) and the pool follows a
promotion without a restart. Use session pooling (or none) in front of PostgreSQL: the session
settings above, prepared statements and LISTEN need a session.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from broker.store.audit import build_record, decode_event, normalize_event
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

if TYPE_CHECKING:
    from broker.store.settings import StoreSettings

log = logging.getLogger("broker.store.postgres")

DEFAULT_SCHEMA = "ga4gh_broker"
#: A schema name is a plain lowercase identifier, short enough that ``<schema>_audit`` is a channel name.
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")
#: Oldest server the kernel accepts (sha256() on bytea arrived in PostgreSQL 11; tested on 15).
MIN_SERVER_VERSION = 110000
PURGE_INTERVAL = 60.0
PURGE_BATCH = 1000
TRUNCATE_BATCH = 10_000
AUDIT_PAGE = 500
SCAN_PAGE = 500
GET_MANY_CHUNK = 1000
RESTORE_BATCH = 1000
#: A pooled connection idle longer than this is checked (one empty query) before it is handed out.
IDLE_CHECK_SECONDS = 2.0
#: How often the audit listener wakes without notifications (to stop, or to check its connection).
LISTEN_POLL_SECONDS = 0.25
LISTEN_CHECK_SECONDS = 5.0

T = TypeVar("T")

# A record is identified by the SHA-256 of its two names (the unique expression index of records
# and counters): "sha256(kind) = sha256(%(kind)s) AND sha256(key) = sha256(%(key)s)" below. A
# record is live when "expires_at IS NULL OR expires_at > %(now)s". Every statement is a constant.
SQL_GET = (
    "SELECT value FROM records WHERE sha256(kind) = sha256(%(kind)s) AND sha256(key) = sha256(%(key)s) "
    "AND (expires_at IS NULL OR expires_at > %(now)s)"
)
SQL_GET_MANY = (
    "SELECT r.key, r.value FROM unnest(%(keys)s::bytea[]) AS q(key) "
    "JOIN records r ON sha256(r.kind) = sha256(%(kind)s) AND sha256(r.key) = sha256(q.key) "
    "WHERE r.expires_at IS NULL OR r.expires_at > %(now)s"
)
SQL_FIND = (
    "SELECT r.key, r.value, r.expires_at FROM record_terms t "
    "JOIN records r ON sha256(r.kind) = sha256(t.kind) AND sha256(r.key) = sha256(t.key) "
    "WHERE sha256(t.kind) = sha256(%(kind)s) AND sha256(t.term) = sha256(%(term)s) "
    "AND (r.expires_at IS NULL OR r.expires_at > %(now)s)"
)
# Keyset paging in key order. The prefix condition is implied by ``key > after`` and only lets
# the records_order index start the range; ordering by (prefix, key) is ordering by key.
SQL_SCAN = (
    "SELECT key, value, expires_at FROM records WHERE sha256(kind) = sha256(%(kind)s) "
    "AND substring(key FROM 1 FOR 512) >= substring(%(after)s FROM 1 FOR 512) AND key > %(after)s "
    "AND (expires_at IS NULL OR expires_at > %(now)s) ORDER BY substring(key FROM 1 FOR 512), key LIMIT %(limit)s"
)
SQL_KINDS = "SELECT DISTINCT kind FROM records WHERE expires_at IS NULL OR expires_at > %(now)s"
SQL_TERMS_OF = (
    "SELECT term FROM record_terms WHERE sha256(kind) = sha256(%(kind)s) AND sha256(key) = sha256(%(key)s) "
    "AND EXISTS (SELECT 1 FROM records WHERE sha256(kind) = sha256(%(kind)s) AND sha256(key) = sha256(%(key)s) "
    "AND (expires_at IS NULL OR expires_at > %(now)s))"
)
SQL_UPSERT = (
    "INSERT INTO records (kind, key, value, expires_at) VALUES (%(kind)s, %(key)s, %(value)s, %(expires)s) "
    "ON CONFLICT ((sha256(kind)), (sha256(key))) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
)
# add: insert, or replace a record whose expiry has passed; a row back means written.
SQL_ADD = SQL_UPSERT + " WHERE records.expires_at IS NOT NULL AND records.expires_at <= %(now)s RETURNING 1"
# After the upsert has locked the record: drop the terms it no longer has, add the new ones.
SQL_SET_TERMS = (
    "WITH gone AS (DELETE FROM record_terms WHERE sha256(kind) = sha256(%(kind)s) AND sha256(key) = sha256(%(key)s) "
    "AND NOT (sha256(term) = ANY (SELECT sha256(t) FROM unnest(%(terms)s::bytea[]) AS t))) "
    "INSERT INTO record_terms (kind, term, key) SELECT %(kind)s, t, %(key)s FROM unnest(%(terms)s::bytea[]) AS t "
    "ON CONFLICT ((sha256(kind)), (sha256(term)), (sha256(key))) DO NOTHING"
)
SQL_DELETE = (
    "DELETE FROM records WHERE sha256(kind) = sha256(%(kind)s) AND sha256(key) = sha256(%(key)s) "
    "RETURNING value, expires_at"
)
SQL_DELETE_TERMS = "DELETE FROM record_terms WHERE sha256(kind) = sha256(%(kind)s) AND sha256(key) = sha256(%(key)s)"
SQL_INCR = (
    "INSERT INTO counters (kind, key, count, expires_at) VALUES (%(kind)s, %(key)s, 1, %(expires)s) "
    "ON CONFLICT ((sha256(kind)), (sha256(key))) DO UPDATE SET "
    "count = CASE WHEN counters.expires_at <= %(now)s THEN 1 ELSE counters.count + 1 END, "
    "expires_at = CASE WHEN counters.expires_at <= %(now)s THEN EXCLUDED.expires_at ELSE counters.expires_at END "
    "RETURNING count"
)
SQL_PURGE_RECORDS = (
    "WITH doomed AS (DELETE FROM records WHERE ctid = ANY (ARRAY("
    "SELECT ctid FROM records WHERE expires_at <= %(now)s LIMIT %(limit)s FOR UPDATE SKIP LOCKED)) "
    "AND expires_at <= %(now)s RETURNING kind, key), "
    "terms AS (DELETE FROM record_terms t USING doomed d "
    "WHERE sha256(t.kind) = sha256(d.kind) AND sha256(t.key) = sha256(d.key)) "
    "SELECT count(*) FROM doomed"
)
SQL_PURGE_COUNTERS = (
    "DELETE FROM counters WHERE ctid = ANY (ARRAY("
    "SELECT ctid FROM counters WHERE expires_at <= %(now)s LIMIT %(limit)s FOR UPDATE SKIP LOCKED)) "
    "AND expires_at <= %(now)s"
)
SQL_LOCK_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
SQL_APPEND = (
    "WITH ins AS (INSERT INTO audit (seq, at, event, prev_hash, hash) SELECT * FROM unnest("
    "%(seqs)s::bigint[], %(ats)s::bigint[], %(events)s::text[], %(prevs)s::text[], %(hashes)s::text[])), "
    "head AS (UPDATE audit_head SET seq = %(last)s, hash = %(head)s WHERE id = 1) "
    "SELECT pg_notify(%(channel)s, s::text) FROM unnest(%(seqs)s::bigint[]) AS s"
)
SQL_RESTORE = (
    "INSERT INTO audit (seq, at, event, prev_hash, hash) SELECT * FROM unnest("
    "%(seqs)s::bigint[], %(ats)s::bigint[], %(events)s::text[], %(prevs)s::text[], %(hashes)s::text[])"
)
SQL_AUDIT_PAGE = "SELECT seq, at, event, prev_hash, hash FROM audit WHERE seq > %s ORDER BY seq LIMIT %s"


# ---------------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file: ``NNNN_name.sql`` holds version NNNN."""

    version: int
    name: str
    sql: str


MIGRATION_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


def shipped_migrations() -> list[Migration]:
    """The migrations shipped with this broker (package data), in version order."""
    found = []
    for entry in resources.files("broker.store.migrations").iterdir():
        match = MIGRATION_FILE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"postgres: shipped migrations are not numbered 1..n without gaps: {versions}")
    return found


def latest_version() -> int:
    """The schema version this broker needs (the newest shipped migration)."""
    return shipped_migrations()[-1].version


def check_schema_name(schema: str) -> str:
    """A schema name: lowercase letters, digits and '_', at most 40 (it also names the NOTIFY channel)."""
    if not isinstance(schema, str) or not SCHEMA_NAME.fullmatch(schema):
        raise ValueError(
            f"postgres schema must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 40 characters), got {schema!r}"
        )
    return schema


def migrate(
    url: str,
    schema: str = DEFAULT_SCHEMA,
    *,
    timeout: float = 30.0,
    migrations: Sequence[Migration] | None = None,
) -> list[int]:
    """Bring ``schema`` up to the newest migration; the versions applied now ([] when already current).

    Each pending file runs in a transaction of its own, together with its row in
    ``schema_migrations``, so a failing file leaves the schema at the previous version. An
    advisory lock keyed by the schema makes concurrent runs (several pods starting at once) take
    turns; the second finds nothing to do. A schema already at a version this broker does not
    know is refused (never downgraded), and so is an applied file whose text has changed since.
    ``migrations`` replaces the shipped files (tests).
    """
    check_schema_name(schema)
    todo = sorted(migrations if migrations is not None else shipped_migrations(), key=lambda m: m.version)
    known = max((m.version for m in todo), default=0)
    applied: list[int] = []
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=max(2, int(timeout))) as conn:
            conn.execute(sql.SQL("SET statement_timeout TO {}").format(sql.Literal(int(timeout * 1000))))
            conn.execute("SET synchronous_commit TO on")
            # One migrator per schema at a time (released when the connection closes).
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"ga4gh-broker migrate {schema}",))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done: dict[int, str] = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            newest = max(done, default=0)
            if newest > known:
                raise StoreError(
                    f"postgres: schema {schema!r} is at version {newest}, newer than this broker's {known}; "
                    "upgrade the broker (`ga4gh-broker store migrate` never downgrades)"
                )
            for migration in todo:
                checksum = _checksum(migration.sql)
                if migration.version in done:
                    if done[migration.version] != checksum:
                        raise StoreError(
                            f"postgres: migration {migration.version:04d}_{migration.name}.sql differs from the "
                            f"one applied to schema {schema!r}; shipped migrations must never change"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode("utf-8"))
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, checksum),
                    )
                applied.append(migration.version)
    except psycopg.Error as exc:
        raise _translate(exc) from exc
    return applied


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- errors


def _first_line(exc: BaseException) -> str:
    """An error's primary message only: DETAIL lines may quote stored values."""
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


def _translate(exc: psycopg.Error, cut_after: float | None = None) -> StoreError:
    """StoreUnavailable for anything that means "cannot be served now"; StoreError otherwise."""
    if cut_after is not None:
        return StoreUnavailable(f"postgres: no answer within {cut_after:g} s; the connection was cut")
    name = exc.__class__.__name__
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return StoreUnavailable(f"postgres: the server is read-only (a replica?): {_first_line(exc)}")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # connection failures, timeouts and cancels (57014), shutdowns (57P*), too many
        # connections / disk full (53*), serialization failures (40*)
        return StoreUnavailable(f"postgres: {name}: {_first_line(exc)}")
    return StoreError(f"postgres: {name}: {_first_line(exc)}")


# ---------------------------------------------------------------------- connections


_connect_errors: dict[str, str] = {}


class _Connection(psycopg.Connection[TupleRow]):
    """A pooled connection that knows when it was last used, and records why connecting failed."""

    last_used: float = 0.0

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> _Connection:
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            _connect_errors[conninfo] = _first_line(exc)
            raise
        _connect_errors.pop(conninfo, None)
        return conn


class _Alarm:
    __slots__ = ("deadline", "done", "fired", "sock")

    def __init__(self, deadline: float, sock: socket.socket) -> None:
        self.deadline = deadline
        self.sock = sock
        self.done = False
        self.fired = False


class _Watchdog:
    """One thread per process that cuts the connection of a call still waiting at its deadline.

    ``arm`` keeps a duplicate of the connection's socket descriptor, so the socket it shuts down
    is always the one the call uses, even if libpq has closed its own descriptor meanwhile (a
    recycled descriptor number is never touched). Shutting the socket down makes the blocked
    read return at once; the call then fails with StoreUnavailable and the pool drops the
    connection.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._order = itertools.count()
        thread = threading.Thread(target=self._run, name="postgres-store-watchdog", daemon=True)
        thread.start()

    def arm(self, fd: int, deadline: float) -> _Alarm:
        alarm = _Alarm(deadline, socket.socket(fileno=os.dup(fd)))
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._order), alarm))
            if self._heap[0][2] is alarm:
                self._cond.notify()
        return alarm

    def disarm(self, alarm: _Alarm) -> bool:
        """Stop watching (again is harmless); True when the alarm had cut the connection."""
        with self._cond:
            alarm.done = True
            fired = alarm.fired
        alarm.sock.close()
        return fired

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                alarm = heapq.heappop(self._heap)[2]
                alarm.fired = True
                with suppress(OSError):
                    alarm.sock.shutdown(socket.SHUT_RDWR)


_watchdog: tuple[int, _Watchdog] | None = None
_watchdog_lock = threading.Lock()


def _the_watchdog() -> _Watchdog:
    """This process's watchdog (made on first use; a forked child makes its own)."""
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None or _watchdog[0] != os.getpid():
            _watchdog = (os.getpid(), _Watchdog())
        return _watchdog[1]


# ---------------------------------------------------------------------- helpers


def _name(what: str, value: object) -> bytes:
    """A checked name as stored (UTF-8 bytes); ValueError for a bad one (lone surrogates included)."""
    return check_name(what, value).encode("utf-8")


def _text(value: bytes) -> str:
    return bytes(value).decode("utf-8")


def _check_at(at: object) -> int:
    if isinstance(at, bool) or not isinstance(at, int):
        raise ValueError(f"audit time 'at' must be integer seconds, got {type(at).__name__}")
    return at


def _put_rows(
    conn: psycopg.Connection[TupleRow], kind: bytes, key: bytes, value: str, expires: int | None, terms: list[bytes]
) -> None:
    """Write a record and exactly its terms (the upsert locks the record first)."""
    conn.execute(SQL_UPSERT, {"kind": kind, "key": key, "value": value, "expires": expires})
    conn.execute(SQL_SET_TERMS, {"kind": kind, "key": key, "terms": terms})


def _delete_rows(conn: psycopg.Connection[TupleRow], kind: bytes, key: bytes) -> tuple[Any, ...] | None:
    """Delete a record and its terms; the deleted (value, expires_at) or None."""
    row = conn.execute(SQL_DELETE, {"kind": kind, "key": key}).fetchone()
    conn.execute(SQL_DELETE_TERMS, {"kind": kind, "key": key})
    return row


def _find(conn: psycopg.Connection[TupleRow], kind: bytes, term: bytes, now: int) -> list[Item]:
    rows = conn.execute(SQL_FIND, {"kind": kind, "term": term, "now": now}).fetchall()
    items = [Item(_text(key), load_value(value), expires) for key, value, expires in rows]
    return sorted(items, key=lambda i: i.key)


def _append_audit(
    conn: psycopg.Connection[TupleRow], items: list[tuple[dict[str, Any], int]], channel: str
) -> list[AuditRecord]:
    """Append normalized events inside the caller's transaction: lock the head, chain, insert, NOTIFY."""
    head = conn.execute(SQL_LOCK_HEAD).fetchone()
    if head is None:
        raise StoreError("postgres: the audit head row is missing; run `ga4gh-broker audit verify`")
    seq, prev_hash = int(head[0]), str(head[1])
    records: list[AuditRecord] = []
    for event, at in items:
        seq += 1
        record = build_record(seq, at, event, prev_hash)
        records.append(record)
        prev_hash = record.hash
    conn.execute(SQL_APPEND, _audit_params(records) | {"channel": channel})
    return records


def _audit_params(records: list[AuditRecord]) -> dict[str, Any]:
    return {
        "seqs": [r.seq for r in records],
        "ats": [r.at for r in records],
        "events": [json.dumps(r.event, separators=(",", ":"), sort_keys=True) for r in records],
        "prevs": [r.prev_hash for r in records],
        "hashes": [r.hash for r in records],
        "last": records[-1].seq,
        "head": records[-1].hash,
    }


class _PendingAudit:
    """One queued audit append and, once its group is committed, its record or the failure."""

    __slots__ = ("at", "deadline", "error", "event", "finished", "record")

    def __init__(self, event: dict[str, Any], at: int, deadline: float) -> None:
        self.event = event
        self.at = at
        self.deadline = deadline
        self.finished = False
        self.record: AuditRecord | None = None
        self.error: BaseException | None = None

    def outcome(self) -> AuditRecord:
        if self.error is not None:
            raise self.error
        assert self.record is not None
        return self.record


class _PostgresTx:
    """One attempt of a serializable transaction: reads now, writes and audit events queued to the end."""

    def __init__(self, conn: psycopg.Connection[TupleRow], now: int) -> None:
        self._conn = conn
        self._now = now
        self.writes: list[tuple[bytes, bytes, str | None, int | None, list[bytes]]] = []
        self.events: list[tuple[dict[str, Any], int]] = []

    @property
    def now(self) -> int:
        return self._now

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        params = {"kind": _name("kind", kind), "key": _name("key", key), "now": self._now}
        row = self._conn.execute(SQL_GET, params).fetchone()
        return load_value(row[0]) if row else None

    def find(self, kind: str, term: str) -> list[Item]:
        return _find(self._conn, _name("kind", kind), _name("term", term), self._now)

    def put(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> None:
        checked = [t.encode("utf-8") for t in check_terms(terms)]
        self.writes.append(
            (_name("kind", kind), _name("key", key), dump_value(value), check_expiry(expires_at), checked)
        )

    def delete(self, kind: str, key: str) -> None:
        self.writes.append((_name("kind", kind), _name("key", key), None, None, []))

    def audit(self, event: dict[str, Any], at: int | None = None) -> None:
        self.events.append((normalize_event(event), _check_at(self._now if at is None else at)))


# ---------------------------------------------------------------------- the kernel


class PostgresKernel:
    """The store kernel on a PostgreSQL server (see the module docstring)."""

    backend = "postgres"

    def __init__(
        self,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        timeout: float = 2.0,
        pool_min: int = 1,
        pool_max: int = 10,
        connect_timeout: float = 2.0,
    ) -> None:
        """Open a pool on ``url`` and check the schema; StoreError when it is missing or at another version.

        ``timeout`` bounds every call; ``connect_timeout`` one connection attempt per host
        (libpq counts whole seconds, at least 2); ``pool_min``/``pool_max`` the connections this
        process keeps open / may open.
        """
        self.schema = check_schema_name(schema)
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not (0 <= pool_min <= pool_max and pool_max >= 1):
            raise ValueError(f"need 0 <= pool_min <= pool_max and pool_max >= 1, got {pool_min}, {pool_max}")
        self.timeout = float(timeout)
        self.channel = f"{schema}_audit"
        self._url = url
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._connect_timeout = max(2, round(connect_timeout))
        self._lock = threading.Lock()
        self._pool: ConnectionPool[_Connection] | None = None
        self._pool_pid = 0
        self._orphans: list[object] = []
        self._closed = False
        self._next_purge = time.monotonic() + PURGE_INTERVAL * random.random()  # noqa: S311 - spreading only
        self._purging = False
        self._listeners: list[_AuditListener] = []
        self._audit_cond = threading.Condition()
        self._audit_queue: list[_PendingAudit] = []
        self._audit_busy = False
        self._logged_warnings: tuple[str, ...] = ()
        #: Test hook, as on SQLite: called with "before_commit" inside every write transaction;
        #: raising there cuts the change in the middle, as a crash would.
        self.fault: Callable[[str], None] | None = None
        try:
            self._check_schema()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ connections

    def _connection_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": self._connect_timeout,
            "application_name": "ga4gh-broker",
            # A dead peer is noticed even when nothing is in flight (the audit listener, idle pool).
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 3,
            "keepalives_count": 3,
            # Sent data unacknowledged this long (a partition) closes the connection.
            "tcp_user_timeout": int(max(self.timeout, 1.0) * 1000) + 1000,
        }

    def _configure(self, conn: _Connection) -> None:
        """Session settings (see the module docstring), once per new connection."""
        conn.last_used = time.monotonic()
        statement_ms = max(1, int(self.timeout * 1000 * 0.9))
        idle_ms = int(max(30.0, self.timeout * 10) * 1000)
        conn.execute(
            sql.SQL(
                "SET search_path TO {}; SET synchronous_commit TO on; SET statement_timeout TO {}; "
                "SET idle_in_transaction_session_timeout TO {}"
            ).format(sql.Identifier(self.schema), sql.Literal(statement_ms), sql.Literal(idle_ms))
        )

    def _current_pool(self) -> ConnectionPool[_Connection]:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("postgres: store is closed")
            if self._pool is None or self._pool_pid != os.getpid():
                if self._pool is not None:
                    # Forked: the parent's connections must be neither used nor closed here (closing
                    # would end the parent's sessions); keep the copy alive so it is never collected.
                    self._orphans.append(self._pool)
                pool: ConnectionPool[_Connection] = ConnectionPool(
                    self._url,
                    connection_class=_Connection,
                    kwargs=self._connection_kwargs(),
                    min_size=self._pool_min,
                    max_size=self._pool_max,
                    open=False,
                    configure=self._configure,
                    name=f"ga4gh-broker-{self.schema}",
                    timeout=self.timeout,
                    # Give up a background reconnection chain soon: the next caller starts a fresh
                    # one at once, instead of waiting out an exponential backoff after a failover.
                    reconnect_timeout=max(2.0, 2 * self.timeout),
                )
                pool.open(wait=False)
                self._pool, self._pool_pid = pool, os.getpid()
            return self._pool

    @contextmanager
    def _session(self, deadline: float | None = None) -> Iterator[_Connection]:
        """A connection for this call alone until ``deadline``; errors become StoreError/StoreUnavailable.

        The watchdog guards the connection from the moment it is handed out: a connection idle
        for a while is first checked with an empty query (replaced when it is dead), and an open
        transaction is rolled back on the way out of an error. The connection then goes back to
        the pool, which discards it when it is broken.
        """
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        pool = self._current_pool()
        watchdog = _the_watchdog()
        conn, alarm = self._checked_connection(pool, watchdog, deadline)
        try:
            try:
                yield conn
            finally:
                if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                    with suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
        except psycopg.Error as exc:
            fired = watchdog.disarm(alarm)
            raise _translate(exc, self.timeout if fired else None) from exc
        finally:
            watchdog.disarm(alarm)  # a second disarm is a no-op
            conn.last_used = time.monotonic()
            pool.putconn(conn)

    def _checked_connection(
        self, pool: ConnectionPool[_Connection], watchdog: _Watchdog, deadline: float
    ) -> tuple[_Connection, _Alarm]:
        """A pooled connection known to work (checked when it sat idle), armed until ``deadline``."""
        while True:
            try:
                conn = pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
            except PoolTimeout:
                why = _connect_errors.get(self._url)
                raise StoreUnavailable(
                    f"postgres: no connection within {self.timeout:g} s" + (f" (last attempt: {why})" if why else "")
                ) from None
            except PoolClosed:
                raise StoreUnavailable("postgres: store is closed") from None
            try:
                alarm = watchdog.arm(conn.pgconn.socket, deadline)
            except psycopg.Error:
                conn.close()
                pool.putconn(conn)
                continue
            if time.monotonic() - conn.last_used <= IDLE_CHECK_SECONDS:
                return conn, alarm
            try:
                conn.execute("")
                return conn, alarm
            except psycopg.Error as exc:
                fired = watchdog.disarm(alarm)
                conn.close()
                pool.putconn(conn)  # the pool replaces it
                if fired or time.monotonic() >= deadline:
                    raise _translate(exc, self.timeout if fired else None) from exc

    @contextmanager
    def _write(self, deadline: float | None = None) -> Iterator[_Connection]:
        """A READ COMMITTED write transaction, committed on a clean exit."""
        with self._session(deadline) as conn:
            conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            yield conn
            if self.fault is not None:
                self.fault("before_commit")
            conn.execute("COMMIT")

    def _check_schema(self) -> None:
        with self._session() as conn:
            row = conn.execute(
                "SELECT current_setting('server_version_num')::int, to_regclass(%s) IS NOT NULL",
                (f'"{self.schema}".schema_migrations',),
            ).fetchone()
            assert row is not None
            server_version, has_schema = row
            if server_version < MIN_SERVER_VERSION:
                raise StoreError(f"postgres: server version {server_version} is too old; the store needs 11 or newer")
            if not has_schema:
                raise StoreError(
                    f"postgres: schema {self.schema!r} has no broker tables; run `ga4gh-broker store migrate` first"
                )
            version_row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        version, needed = int(version_row[0]) if version_row else 0, latest_version()
        if version > needed:
            raise StoreError(
                f"postgres: schema {self.schema!r} is at version {version}, newer than this broker's {needed}; "
                "upgrade the broker (`ga4gh-broker store migrate` never downgrades)"
            )
        if version < needed:
            raise StoreError(
                f"postgres: schema {self.schema!r} is at version {version}, this broker needs {needed}; "
                "run `ga4gh-broker store migrate`"
            )

    # ------------------------------------------------------------------ lifecycle

    def health(self) -> Health:
        """Not ready on a replica, a read-only server or another schema version; warns on weak durability."""
        with self._session() as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('transaction_read_only'), "
                "current_setting('synchronous_commit'), current_setting('fsync'), "
                "(SELECT coalesce(max(version), 0) FROM schema_migrations)"
            ).fetchone()
        assert row is not None
        in_recovery, read_only, sync_commit, fsync, version = row
        ok = True
        warnings: list[str] = []
        if in_recovery:
            ok = False
            warnings.append(
                "the server is a replica (pg_is_in_recovery() is true) and refuses writes; point store.url at "
                "the primary, or list every node with target_session_attrs=read-write (store refused: not ready)"
            )
        elif read_only == "on":
            ok = False
            warnings.append(
                "the server is read-only (transaction_read_only is on, e.g. default_transaction_read_only) "
                "and refuses writes (store refused: not ready)"
            )
        if sync_commit == "off":
            warnings.append(
                "synchronous_commit is off: acknowledged writes can be lost in a crash; the broker sets it on "
                "per session, so something in between (a transaction pooler?) drops session settings"
            )
        if fsync == "off":
            warnings.append("fsync is off on the server: a crash of its machine can lose or corrupt committed data")
        if int(version) != latest_version():
            ok = False
            warnings.append(
                f"schema {self.schema!r} is at version {version}, this broker needs {latest_version()}; "
                "run `ga4gh-broker store migrate` (store refused: not ready)"
            )
        if tuple(warnings) != self._logged_warnings:  # once per change, not on every readiness probe
            self._logged_warnings = tuple(warnings)
            for warning in warnings:
                (log.error if not ok else log.warning)("postgres store: %s", warning)
        return Health(ok=ok, backend=self.backend, warnings=warnings)

    def close(self) -> None:
        """Stop audit listeners and close this process's pool; calls after this raise StoreUnavailable."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            mine = self._pool_pid == os.getpid()
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()
        if pool is not None and mine:
            pool.close(timeout=5.0)

    # ------------------------------------------------------------------ reads

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        params = {"kind": _name("kind", kind), "key": _name("key", key), "now": int(time.time())}
        with self._session() as conn:
            row = conn.execute(SQL_GET, params).fetchone()
        return load_value(row[0]) if row else None

    def get_many(self, kind: str, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        if not keys:
            return []
        kind_b = _name("kind", kind)
        encoded = [_name("key", k) for k in keys]
        found: dict[bytes, dict[str, Any]] = {}
        now = int(time.time())
        with self._session() as conn:
            for start in range(0, len(encoded), GET_MANY_CHUNK):
                chunk = encoded[start : start + GET_MANY_CHUNK]
                for key, value in conn.execute(SQL_GET_MANY, {"kind": kind_b, "keys": chunk, "now": now}):
                    found[bytes(key)] = load_value(value)
        return [found.get(k) for k in encoded]

    def find(self, kind: str, term: str) -> list[Item]:
        kind_b, term_b = _name("kind", kind), _name("term", term)
        with self._session() as conn:
            return _find(conn, kind_b, term_b, int(time.time()))

    def scan(self, kind: str) -> Iterator[Item]:
        """Every live record of ``kind``, in key order, read in pages (each page its own call)."""
        kind_b = _name("kind", kind)
        after = b""
        while True:
            params = {"kind": kind_b, "after": after, "now": int(time.time()), "limit": SCAN_PAGE}
            with self._session() as conn:
                rows = conn.execute(SQL_SCAN, params).fetchall()
            for key, value, expires in rows:
                yield Item(_text(key), load_value(value), expires)
            if len(rows) < SCAN_PAGE:
                return
            after = bytes(rows[-1][0])

    def kinds(self) -> list[str]:
        with self._session() as conn:
            rows = conn.execute(SQL_KINDS, {"now": int(time.time())}).fetchall()
        return sorted(_text(r[0]) for r in rows)

    def terms_of(self, kind: str, key: str) -> tuple[str, ...]:
        """The index terms of a live record, sorted; () when it is absent or expired."""
        params = {"kind": _name("kind", kind), "key": _name("key", key), "now": int(time.time())}
        with self._session() as conn:
            rows = conn.execute(SQL_TERMS_OF, params).fetchall()
        return tuple(sorted(_text(r[0]) for r in rows))

    # ------------------------------------------------------------------ single writes

    def put(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> None:
        kind_b, key_b = _name("kind", kind), _name("key", key)
        text, expires = dump_value(value), check_expiry(expires_at)
        checked = [t.encode("utf-8") for t in check_terms(terms)]
        with self._write() as conn:
            _put_rows(conn, kind_b, key_b, text, expires, checked)
        self._maybe_purge()

    def add(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> bool:
        kind_b, key_b = _name("kind", kind), _name("key", key)
        text, expires = dump_value(value), check_expiry(expires_at)
        checked = [t.encode("utf-8") for t in check_terms(terms)]
        params = {"kind": kind_b, "key": key_b, "value": text, "expires": expires, "now": int(time.time())}
        with self._write() as conn:
            added = conn.execute(SQL_ADD, params).fetchone() is not None
            if added:
                conn.execute(SQL_SET_TERMS, {"kind": kind_b, "key": key_b, "terms": checked})
        self._maybe_purge()
        return added

    def take(self, kind: str, key: str) -> dict[str, Any] | None:
        kind_b, key_b = _name("kind", kind), _name("key", key)
        now = int(time.time())
        with self._write() as conn:
            row = _delete_rows(conn, kind_b, key_b)
        if row is None or (row[1] is not None and row[1] <= now):
            return None
        return load_value(row[0])

    def delete(self, kind: str, key: str) -> bool:
        kind_b, key_b = _name("kind", kind), _name("key", key)
        now = int(time.time())
        with self._write() as conn:
            row = _delete_rows(conn, kind_b, key_b)
        return row is not None and (row[1] is None or row[1] > now)

    def incr(self, kind: str, key: str, *, expires_at: int) -> int:
        params = {
            "kind": _name("kind", kind),
            "key": _name("key", key),
            "expires": check_expiry(expires_at),
            "now": int(time.time()),
        }
        with self._session() as conn:  # one statement: its own transaction
            row = conn.execute(SQL_INCR, params).fetchone()
        assert row is not None
        return int(row[0])

    # ------------------------------------------------------------------ transactions

    def update(self, kind: str, key: str, fn: Callable[[dict[str, Any] | None], Write | None]) -> dict[str, Any] | None:
        def run(tx: _PostgresTx) -> dict[str, Any] | None:
            outcome = fn(tx.get(kind, key))
            if outcome is None:
                tx.delete(kind, key)
                return None
            tx.put(kind, key, outcome.value, expires_at=outcome.expires_at, terms=outcome.terms)
            return outcome.value

        return self.transact(run)

    def transact(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(tx)`` in a SERIALIZABLE transaction; again (fresh snapshot) when PostgreSQL aborts it."""
        deadline = time.monotonic() + self.timeout
        attempt = 0
        with self._session(deadline) as conn:
            while True:
                attempt += 1
                try:
                    conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                    tx = _PostgresTx(conn, int(time.time()))
                    result = fn(tx)
                    for kind, key, value, expires, terms in tx.writes:
                        if value is None:
                            _delete_rows(conn, kind, key)
                        else:
                            _put_rows(conn, kind, key, value, expires, terms)
                    if tx.events:
                        _append_audit(conn, tx.events, self.channel)
                    if self.fault is not None:
                        self.fault("before_commit")
                    conn.execute("COMMIT")
                    break
                except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected):
                    # Reported before anything was committed: safe to run fn again.
                    if conn.info.transaction_status != TransactionStatus.IDLE:
                        conn.execute("ROLLBACK")
                    remaining = deadline - time.monotonic()
                    if attempt >= MAX_TRANSACTION_ATTEMPTS or remaining <= 0:
                        raise StoreUnavailable(
                            "postgres: a transaction kept conflicting with concurrent writers; try again"
                        ) from None
                    pause = random.uniform(0, min(0.002 * 2 ** min(attempt, 6), 0.1))  # noqa: S311 - jitter only
                    time.sleep(min(pause, remaining))
        self._maybe_purge()
        return result

    # ------------------------------------------------------------------ audit log

    def audit_append(self, event: dict[str, Any], at: int) -> AuditRecord:
        """Append one record under the head lock; committed (synchronous_commit on) when this returns.

        Group commit: concurrent appends of this process share one transaction (one lock of the
        head, one WAL flush), in queue order. The first caller to find no commit under way writes
        every record queued so far, within the earliest deadline among them; the others wait for
        that commit and take their own record from it. An event is validated before it is
        queued, so a bad one fails only its caller. A caller still queued at its deadline leaves
        the queue and gets StoreUnavailable.
        """
        pending = _PendingAudit(normalize_event(event), _check_at(at), time.monotonic() + self.timeout)
        with self._audit_cond:
            self._audit_queue.append(pending)
            while not pending.finished and self._audit_busy:
                remaining = pending.deadline - time.monotonic()
                if remaining <= 0 and pending in self._audit_queue:
                    self._audit_queue.remove(pending)
                    raise StoreUnavailable(f"postgres: audit append not started within {self.timeout:g} s")
                self._audit_cond.wait(max(remaining, 0.01))
            if pending.finished:
                return pending.outcome()
            self._audit_busy = True
            batch, self._audit_queue = self._audit_queue, []
        try:
            with self._write(deadline=min(p.deadline for p in batch)) as conn:
                records = _append_audit(conn, [(p.event, p.at) for p in batch], self.channel)
            for p, record in zip(batch, records, strict=True):
                p.record = record
        except BaseException as exc:  # every caller of the failed commit gets the failure
            for p in batch:
                p.error = exc
        finally:
            with self._audit_cond:
                for p in batch:
                    p.finished = True
                self._audit_busy = False
                self._audit_cond.notify_all()
        return pending.outcome()

    def audit_last_seq(self) -> int:
        """The seq of the newest record, read from the head (0 for an empty log)."""
        with self._session() as conn:
            row = conn.execute("SELECT seq FROM audit_head WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]:
        """Records with seq > after_seq in seq order, read in pages (any log length)."""
        cursor = int(after_seq)
        while True:
            with self._session() as conn:
                rows = conn.execute(SQL_AUDIT_PAGE, (cursor, AUDIT_PAGE)).fetchall()
            for seq, at, event, prev, hash_ in rows:
                yield AuditRecord(seq=int(seq), at=int(at), event=decode_event(event), prev_hash=prev, hash=hash_)
            if len(rows) < AUDIT_PAGE:
                return
            cursor = int(rows[-1][0])

    def audit_restore(self, records: Iterable[AuditRecord]) -> int:
        """Write records verbatim (their seq, prev_hash and hash) into an empty log; the number written.

        Refused with Conflict when the log has ever had a record. The head moves to the last
        record, so appends continue the restored chain. One transaction: all or nothing.
        """
        with self._write(deadline=time.monotonic() + max(self.timeout, 60.0)) as conn:
            head = conn.execute(SQL_LOCK_HEAD).fetchone()
            exists = conn.execute("SELECT EXISTS (SELECT 1 FROM audit)").fetchone()
            if head is None or int(head[0]) != 0 or (exists and exists[0]):
                raise Conflict("postgres: audit_restore needs an empty audit log, and this one has records")
            written, last = 0, 0
            batch: list[AuditRecord] = []
            for record in records:
                last = _check_restore_order(record, last)
                batch.append(record)
                if len(batch) >= RESTORE_BATCH:
                    conn.execute(SQL_RESTORE, _audit_params(batch))
                    written, batch = written + len(batch), []
            if batch:
                conn.execute(SQL_RESTORE, _audit_params(batch))
                written += len(batch)
            if written:
                tail = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                assert tail is not None
                conn.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (tail[0], tail[1]))
        return written

    def audit_truncate(self, through_seq: int) -> int:
        """Remove records with seq <= through_seq (archived elsewhere); the number removed.

        The head stays, so appends continue the chain; the newest record always stays too
        (ValueError when ``through_seq`` reaches it), so the live log can always be exported and
        checked against its archive. Deleted in batches, each its own transaction: a repeat
        after a failure finishes the job.
        """
        if isinstance(through_seq, bool) or not isinstance(through_seq, int) or through_seq < 0:
            raise ValueError(f"through_seq must be a non-negative integer, got {through_seq!r}")
        last = self.audit_last_seq()
        if through_seq >= last and through_seq > 0:
            raise ValueError(f"audit_truncate keeps the newest record: through_seq must be below {last}")
        removed = 0
        while True:
            with self._write() as conn:
                cur = conn.execute(
                    "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE seq <= %s ORDER BY seq LIMIT %s)",
                    (through_seq, TRUNCATE_BATCH),
                )
                count = cur.rowcount
            removed += count
            if count < TRUNCATE_BATCH:
                return removed

    def listen_audit(self, on_seq: Callable[[int], None]) -> _AuditListener:
        """Call ``on_seq(seq)`` for every audit record committed from now on, by any process.

        A background thread with its own connection LISTENs on ``<schema>_audit``; after a
        lost connection it reconnects (following a failover with a multi-host URL) and first
        reports the records committed meanwhile, so no seq is skipped; each seq is reported once,
        in order. ``close()`` stops it. ``on_seq`` runs on that thread and should be quick; an
        exception it raises is logged and ignored.
        """
        kwargs = self._connection_kwargs() | {"application_name": f"broker-audit {self.schema}"}
        listener = _AuditListener(self._url, self.schema, self.channel, on_seq, kwargs)
        with self._lock:
            if self._closed:
                raise StoreUnavailable("postgres: store is closed")
            self._listeners = [x for x in self._listeners if x.running] + [listener]
        listener.start()
        return listener

    # ------------------------------------------------------------------ housekeeping

    def _maybe_purge(self) -> None:
        """Start a purge of every expired row on a background thread, at most once per PURGE_INTERVAL.

        Called after a write has committed; the purge runs apart from the caller, who neither
        waits for it nor sees its errors (they are logged): a caller must never get an error for
        a write that happened, and might retry it.
        """
        now_mono = time.monotonic()
        with self._lock:
            if now_mono < self._next_purge or self._purging or self._closed:
                return
            self._next_purge, self._purging = now_mono + PURGE_INTERVAL, True
        threading.Thread(target=self._purge_in_background, name="postgres-store-purge", daemon=True).start()

    def _purge_in_background(self) -> None:
        try:
            self.purge_expired()
        except StoreError as exc:
            if not self._closed:
                log.warning("postgres store: purging expired records failed (will retry): %s", exc)
        finally:
            with self._lock:
                self._purging = False

    def _purge_batch(self, now: int) -> int:
        params = {"now": now, "limit": PURGE_BATCH}
        with self._write() as conn:
            row = conn.execute(SQL_PURGE_RECORDS, params).fetchone()
            counters = conn.execute(SQL_PURGE_COUNTERS, params).rowcount
        return max(int(row[0]) if row else 0, counters)

    def purge_expired(self) -> None:
        """Delete every expired row now, in batches (normally done on its own during writes)."""
        now = int(time.time())
        while self._purge_batch(now) >= PURGE_BATCH:
            pass


def open_postgres(store: StoreSettings) -> PostgresKernel:
    """The kernel the ``store:`` settings describe (``backend: postgres``)."""
    return PostgresKernel(
        store.url.get_secret_value(),
        schema=store.postgres_schema,
        timeout=store.timeout_seconds,
        pool_min=store.pool_min,
        pool_max=store.pool_max,
        connect_timeout=store.connect_timeout_seconds,
    )


def _check_restore_order(record: AuditRecord, last: int) -> int:
    """Restored records must come in increasing seq order; the record's seq."""
    seq = record.seq
    if isinstance(seq, bool) or not isinstance(seq, int) or seq <= last:
        raise ValueError(f"audit records to restore must have increasing positive seq; got {seq!r} after {last}")
    return seq


class _AuditListener:
    """The thread behind :meth:`PostgresKernel.listen_audit`; ``close()`` stops it."""

    def __init__(
        self,
        url: str,
        schema: str,
        channel: str,
        on_seq: Callable[[int], None],
        kwargs: dict[str, Any],
    ) -> None:
        self._url = url
        self._schema = schema
        self._channel = channel
        self._on_seq = on_seq
        self._kwargs = kwargs
        self._stop = threading.Event()
        #: Set while LISTEN is active (tests wait for it before appending).
        self.listening = threading.Event()
        self.last_seq: int | None = None
        self._thread = threading.Thread(target=self._run, name=f"audit-listener-{schema}", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def __enter__(self) -> _AuditListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deliver_through(self, seq: int) -> None:
        """Report every seq after the last reported one up to ``seq`` (commit order is seq order)."""
        if self.last_seq is None:
            self.last_seq = seq
            return
        while self.last_seq < seq and not self._stop.is_set():
            self.last_seq += 1
            try:
                self._on_seq(self.last_seq)
            except Exception:
                log.exception("audit listener callback failed for seq %s", self.last_seq)

    def _head(self, conn: psycopg.Connection[TupleRow]) -> int:
        row = conn.execute("SELECT seq FROM audit_head WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, **self._kwargs) as conn:
                    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self._deliver_through(self._head(conn))  # the start point, or what was missed
                    self.listening.set()
                    delay = 0.05
                    quiet_since = time.monotonic()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_POLL_SECONDS):
                            quiet_since = time.monotonic()
                            if note.payload.isdigit():
                                self._deliver_through(int(note.payload))
                        if time.monotonic() - quiet_since > LISTEN_CHECK_SECONDS:
                            self._deliver_through(self._head(conn))  # proves the connection, closes any gap
                            quiet_since = time.monotonic()
            except psycopg.Error as exc:
                log.warning(
                    "audit listener on %s lost its connection (%s); reconnecting", self._channel, _first_line(exc)
                )
            except Exception:
                log.exception("audit listener on %s failed; reconnecting", self._channel)
            self.listening.clear()
            self._stop.wait(delay)
            delay = min(delay * 2, 2.0)
