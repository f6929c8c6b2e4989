"""The SQLite backend of the store kernel: one file, safe for many threads and many processes.

Durability: WAL journal with ``synchronous=FULL``, so a call that returned has its write
fsynced (DESIGN rule 7; the durability tests SIGKILL a writer to prove it).

Concurrency: a small pool of connections (one per concurrent caller, never shared by two
threads at once; a forked child never reuses its parent's). Every write that reads first
(``add``, ``take``, ``update``, ``transact``) runs in a ``BEGIN IMMEDIATE`` transaction, which
takes SQLite's single write lock up front, so writers are serialized across threads and
processes; a caller waits for the lock at most ``timeout`` seconds (``busy_timeout``) and then
gets :class:`~broker.store.base.StoreUnavailable`. A transaction's writes are queued while its
function runs and applied at the end, so its reads see the state before it, as on every other
backend.

Layout (schema version 2): ``records(kind, key, value, expires_at)`` holds every record,
``record_terms(kind, term, key)`` its index terms, ``counters`` the ``incr`` counters, and
``audit`` / ``audit_head`` the hash-chained log. A version-1 file (the typed tables of the first
release) is refused with a one-line message naming the command that migrates it.

Lifetimes: every read compares the stored expiry with the clock, so an expired record is never
returned even before it is purged; expired rows are deleted at most once per
:data:`PURGE_INTERVAL` seconds per process, during a write.

Audit appends outside a transaction share commits (group commit): concurrent appends of one
process are written by one transaction and one fsync, in queue order.

Every sqlite3 error becomes a StoreError: StoreUnavailable when the database cannot be opened,
read or locked in time (the web layer answers 503), StoreError otherwise.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from broker.store.audit import GENESIS_HASH, build_record, decode_event, normalize_event
from broker.store.base import AuditRecord, Conflict, Health, StoreError, StoreUnavailable
from broker.store.kernel import Item, Write, check_expiry, check_name, check_terms, dump_value, load_value

PURGE_INTERVAL = 60.0
MAX_IDLE_CONNECTIONS = 16
AUDIT_PAGE = 500
SCAN_PAGE = 500
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_at INTEGER,
    PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS record_terms (
    kind TEXT NOT NULL, term TEXT NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (kind, term, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_terms_by_key ON record_terms (kind, key);
CREATE TABLE IF NOT EXISTS counters (
    kind TEXT NOT NULL, key TEXT NOT NULL, count INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, event TEXT NOT NULL, prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
"""

P = ParamSpec("P")
T = TypeVar("T")


def _translate(exc: sqlite3.Error) -> StoreError:
    """The StoreError for a sqlite3 error: unavailable when the file cannot be used now."""
    if isinstance(exc, sqlite3.OperationalError | sqlite3.InternalError) or type(exc) is sqlite3.DatabaseError:
        return StoreUnavailable(f"sqlite: {exc}")
    return StoreError(f"sqlite: {exc.__class__.__name__}: {exc}")


def _guarded(method: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    return wrapper


class _PendingAudit:
    """One queued audit append and, once its group is committed, its record or the failure."""

    __slots__ = ("at", "error", "event", "finished", "record")

    def __init__(self, event: dict[str, Any], at: int) -> None:
        self.event = event
        self.at = at
        self.finished = False
        self.record: AuditRecord | None = None
        self.error: BaseException | None = None

    def outcome(self) -> AuditRecord:
        if self.error is not None:
            raise self.error
        assert self.record is not None
        return self.record


class _SqliteTx:
    """One transaction on one connection: reads now, writes and audit events queued to the end."""

    def __init__(self, conn: sqlite3.Connection, now: int) -> None:
        self._conn = conn
        self._now = now
        self.writes: list[tuple[str, str, str | None, int | None, tuple[str, ...]]] = []
        self.events: list[tuple[dict[str, Any], int]] = []

    @property
    def now(self) -> int:
        return self._now

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT value FROM records WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (kind, key, self._now),
        ).fetchone()
        return load_value(row[0]) if row else None

    def find(self, kind: str, term: str) -> list[Item]:
        return _find(self._conn, kind, term, self._now)

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


def _find(conn: sqlite3.Connection, kind: str, term: str, now: int) -> list[Item]:
    rows = conn.execute(
        "SELECT r.key, r.value, r.expires_at FROM record_terms t JOIN records r ON r.kind = t.kind AND r.key = t.key "
        "WHERE t.kind = ? AND t.term = ? AND (r.expires_at IS NULL OR r.expires_at > ?) ORDER BY r.key",
        (kind, term, now),
    ).fetchall()
    return [Item(key, load_value(value), expires) for key, value, expires in rows]


def _write(
    conn: sqlite3.Connection, kind: str, key: str, value: str | None, expires: int | None, terms: tuple[str, ...]
) -> None:
    conn.execute("DELETE FROM record_terms WHERE kind = ? AND key = ?", (kind, key))
    if value is None:
        conn.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))
        return
    conn.execute(
        "INSERT OR REPLACE INTO records (kind, key, value, expires_at) VALUES (?, ?, ?, ?)", (kind, key, value, expires)
    )
    conn.executemany(
        "INSERT OR IGNORE INTO record_terms (kind, term, key) VALUES (?, ?, ?)", [(kind, t, key) for t in terms]
    )


class SQLiteKernel:
    """The store kernel on one SQLite file (see the module docstring)."""

    backend = "sqlite"

    def __init__(self, path: str | os.PathLike[str], timeout: float = 2.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        self._next_purge = 0.0
        self._audit_cond = threading.Condition()
        self._audit_queue: list[_PendingAudit] = []
        self._audit_busy = False
        #: Test hook: called with a point name inside every transaction ("before_commit"); raising
        #: there cuts the change in the middle, as a crash or a full disk would.
        self.fault: Callable[[str], None] | None = None
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The file holds password hashes and key ciphertext: owner only. SQLite gives
            # the -wal and -shm files the same mode as the database file.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StoreUnavailable(f"sqlite: cannot create {self.path}: {exc.strerror or exc}") from exc
        self._init_schema()

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {max(1, int(self.timeout * 1000))}")
            self._ensure_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode (it stays so). Switching needs an exclusive lock, and SQLite
        answers "database is locked" at once, without its busy handler, when another process
        opens the same new file at that moment: so retry until the store timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                    return
                conn.execute("PRAGMA journal_mode = WAL").fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _acquire(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("sqlite: store is closed")
            if self._pid != os.getpid():
                # Forked: the parent's connections must be neither used nor closed here
                # (closing would drop this process's POSIX locks on the file).
                self._idle = []
                self._pid = os.getpid()
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _release(self, conn: sqlite3.Connection, healthy: bool) -> None:
        if healthy and not conn.in_transaction:
            with self._lock:
                if not self._closed and self._pid == os.getpid() and len(self._idle) < MAX_IDLE_CONNECTIONS:
                    self._idle.append(conn)
                    return
        conn.close()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for this caller alone; an open transaction is rolled back on error."""
        conn = self._acquire()
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    conn.close()  # the original error is on its way up; this connection is done
                    raise
            # A store-level refusal (ValueError, a caller's own exception) leaves the connection fine to reuse.
            self._release(conn, healthy=not isinstance(exc, sqlite3.Error))
            raise
        self._release(conn, healthy=True)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from the start (BEGIN IMMEDIATE)."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            if self.fault is not None:
                self.fault("before_commit")
            conn.execute("COMMIT")

    @_guarded
    def _init_schema(self) -> None:
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"sqlite: {self.path} has schema version {version}, newer than this "
                    f"broker's {SCHEMA_VERSION}; upgrade the broker"
                )
            if version == 1:
                raise StoreError(
                    f"sqlite: {self.path} has the schema of the first release (version 1); "
                    "run `ga4gh-broker store migrate` to move its records to version 2"
                )
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _maybe_purge(self, conn: sqlite3.Connection) -> None:
        """Delete expired rows (inside the caller's write transaction), at most once per PURGE_INTERVAL."""
        now_mono = time.monotonic()
        if now_mono < self._next_purge:
            return
        self._next_purge = now_mono + PURGE_INTERVAL
        _purge(conn, int(time.time()))

    @_guarded
    def purge_expired(self) -> None:
        """Delete every expired row now (normally done on its own during writes)."""
        with self._transaction() as conn:
            _purge(conn, int(time.time()))

    # ------------------------------------------------------------------ lifecycle

    @_guarded
    def health(self) -> Health:
        """Ready when the file answers; warns when it is not in WAL mode or not fully synced."""
        with self._connection() as conn:
            conn.execute("SELECT 1 FROM audit_head LIMIT 1").fetchall()
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        warnings = []
        if str(mode).lower() != "wal":
            warnings.append(f"journal_mode is {mode}, expected wal")
        if sync != 2:
            warnings.append(f"synchronous is {sync}, expected 2 (FULL): acknowledged writes may be lost")
        return Health(ok=True, backend=self.backend, warnings=warnings)

    def close(self) -> None:
        """Close idle connections; calls after this raise StoreUnavailable."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            mine = self._pid == os.getpid()
        if mine:
            for conn in idle:
                conn.close()

    # ------------------------------------------------------------------ reads

    @_guarded
    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT value FROM records WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (kind, key, int(time.time())),
            ).fetchone()
        return load_value(row[0]) if row else None

    @_guarded
    def get_many(self, kind: str, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        if not keys:
            return []
        found: dict[str, dict[str, Any]] = {}
        now = int(time.time())
        with self._connection() as conn:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT key, value FROM records WHERE kind = ? AND key IN ({marks}) "  # noqa: S608 - only '?' marks
                    "AND (expires_at IS NULL OR expires_at > ?)",
                    (kind, *chunk, now),
                ).fetchall()
                for key, value in rows:
                    found[key] = load_value(value)
        return [found.get(k) for k in keys]

    @_guarded
    def find(self, kind: str, term: str) -> list[Item]:
        with self._connection() as conn:
            return _find(conn, kind, term, int(time.time()))

    def scan(self, kind: str) -> Iterator[Item]:
        """Every live record of ``kind``, in key order, read in pages."""
        after = ""
        while True:
            page = self._scan_page(kind, after)
            yield from page
            if len(page) < SCAN_PAGE:
                return
            after = page[-1].key

    @_guarded
    def _scan_page(self, kind: str, after: str) -> list[Item]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT key, value, expires_at FROM records WHERE kind = ? AND key > ? "
                "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?",
                (kind, after, int(time.time()), SCAN_PAGE),
            ).fetchall()
        return [Item(key, load_value(value), expires) for key, value, expires in rows]

    @_guarded
    def kinds(self) -> list[str]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT kind FROM records WHERE expires_at IS NULL OR expires_at > ? ORDER BY kind",
                (int(time.time()),),
            ).fetchall()
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ single writes

    @_guarded
    def put(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> None:
        check_name("kind", kind)
        check_name("key", key)
        text, expires, checked = dump_value(value), check_expiry(expires_at), check_terms(terms)
        with self._transaction() as conn:
            self._maybe_purge(conn)
            _write(conn, kind, key, text, expires, checked)

    @_guarded
    def add(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> bool:
        check_name("kind", kind)
        check_name("key", key)
        text, expires, checked = dump_value(value), check_expiry(expires_at), check_terms(terms)
        now = int(time.time())
        with self._transaction() as conn:
            self._maybe_purge(conn)
            row = conn.execute(
                "SELECT 1 FROM records WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (kind, key, now),
            ).fetchone()
            if row is not None:
                return False
            _write(conn, kind, key, text, expires, checked)
            return True

    @_guarded
    def take(self, kind: str, key: str) -> dict[str, Any] | None:
        now = int(time.time())
        with self._transaction() as conn:
            rows = conn.execute(
                "DELETE FROM records WHERE kind = ? AND key = ? RETURNING value, expires_at", (kind, key)
            ).fetchall()
            conn.execute("DELETE FROM record_terms WHERE kind = ? AND key = ?", (kind, key))
        if not rows or (rows[0][1] is not None and rows[0][1] <= now):
            return None
        return load_value(rows[0][0])

    @_guarded
    def delete(self, kind: str, key: str) -> bool:
        now = int(time.time())
        with self._transaction() as conn:
            rows = conn.execute(
                "DELETE FROM records WHERE kind = ? AND key = ? RETURNING expires_at", (kind, key)
            ).fetchall()
            conn.execute("DELETE FROM record_terms WHERE kind = ? AND key = ?", (kind, key))
        return bool(rows) and (rows[0][0] is None or rows[0][0] > now)

    @_guarded
    def incr(self, kind: str, key: str, *, expires_at: int) -> int:
        check_name("kind", kind)
        check_name("key", key)
        expires = check_expiry(expires_at)
        now = int(time.time())
        with self._transaction() as conn:
            conn.execute("DELETE FROM counters WHERE kind = ? AND key = ? AND expires_at <= ?", (kind, key, now))
            row = conn.execute(
                "INSERT INTO counters (kind, key, count, expires_at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET count = count + 1 RETURNING count",
                (kind, key, expires),
            ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ transactions

    def update(self, kind: str, key: str, fn: Callable[[dict[str, Any] | None], Write | None]) -> dict[str, Any] | None:
        def run(tx: _SqliteTx) -> dict[str, Any] | None:
            outcome = fn(tx.get(kind, key))
            if outcome is None:
                tx.delete(kind, key)
                return None
            tx.put(kind, key, outcome.value, expires_at=outcome.expires_at, terms=outcome.terms)
            return outcome.value

        return self.transact(run)

    @_guarded
    def transact(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(tx)`` under the write lock; apply its writes and audit events, then commit."""
        with self._transaction() as conn:
            tx = _SqliteTx(conn, int(time.time()))
            result = fn(tx)
            for kind, key, value, expires, terms in tx.writes:
                _write(conn, kind, key, value, expires, terms)
            if tx.events:
                _append_audit(conn, tx.events)
            self._maybe_purge(conn)
        return result

    # ------------------------------------------------------------------ audit log

    def audit_append(self, event: dict[str, Any], at: int) -> AuditRecord:
        """Append one record; it is durable (committed with synchronous=FULL) when this returns.

        Group commit: concurrent appends of this process share one transaction and one fsync.
        The first caller to find no commit under way writes every record queued so far, in
        queue order; the others wait for that commit and take their own record from it. A
        caller's event is validated before it is queued, so a bad event fails only its caller.
        """
        if isinstance(at, bool) or not isinstance(at, int):
            raise ValueError(f"audit time 'at' must be integer seconds, got {type(at).__name__}")
        pending = _PendingAudit(normalize_event(event), at)
        with self._audit_cond:
            self._audit_queue.append(pending)
            while not pending.finished and self._audit_busy:
                self._audit_cond.wait()
            if pending.finished:
                return pending.outcome()
            self._audit_busy = True
            batch, self._audit_queue = self._audit_queue, []
        try:
            records = self._audit_append_batch([(p.event, p.at) for p in batch])
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

    @_guarded
    def _audit_append_batch(self, items: list[tuple[dict[str, Any], int]]) -> list[AuditRecord]:
        with self._transaction() as conn:
            return _append_audit(conn, items)

    @_guarded
    def audit_last_seq(self) -> int:
        """The seq of the newest record, read from the head (0 for an empty log)."""
        with self._connection() as conn:
            rows = conn.execute("SELECT seq FROM audit_head WHERE id = 1").fetchall()
        return int(rows[0][0]) if rows else 0

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]:
        """Records with seq > after_seq in seq order, read in pages (any log length)."""
        cursor = int(after_seq)
        while True:
            page = self._audit_page(cursor)
            yield from page
            if len(page) < AUDIT_PAGE:
                return
            cursor = page[-1].seq

    @_guarded
    def _audit_page(self, after: int) -> list[AuditRecord]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT seq, at, event, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, AUDIT_PAGE),
            ).fetchall()
        return [
            AuditRecord(seq=seq, at=at, event=decode_event(event), prev_hash=prev, hash=hash_)
            for seq, at, event, prev, hash_ in rows
        ]

    # ------------------------------------------------------------------ transfer and retention

    @_guarded
    def terms_of(self, kind: str, key: str) -> tuple[str, ...]:
        """The index terms of a live record, sorted; () when it is absent or expired."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT t.term FROM record_terms t JOIN records r ON r.kind = t.kind AND r.key = t.key "
                "WHERE t.kind = ? AND t.key = ? AND (r.expires_at IS NULL OR r.expires_at > ?) ORDER BY t.term",
                (kind, key, int(time.time())),
            ).fetchall()
        return tuple(r[0] for r in rows)

    @_guarded
    def audit_restore(self, records: Iterable[AuditRecord]) -> int:
        """Write records verbatim into an empty log, in one transaction (see the Kernel protocol)."""
        with self._transaction() as conn:
            head = conn.execute("SELECT seq FROM audit_head WHERE id = 1").fetchone()
            if head is not None or conn.execute("SELECT 1 FROM audit LIMIT 1").fetchone() is not None:
                raise Conflict("sqlite: audit_restore needs an empty audit log, and this one has records")
            last: AuditRecord | None = None
            written = 0
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
                conn.execute(
                    "INSERT INTO audit (seq, at, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
                    (
                        record.seq,
                        record.at,
                        json.dumps(record.event, separators=(",", ":"), sort_keys=True),
                        record.prev_hash,
                        record.hash,
                    ),
                )
                last, written = record, written + 1
            if last is not None:
                conn.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", (last.seq, last.hash))
        return written

    @_guarded
    def audit_truncate(self, through_seq: int) -> int:
        """Remove records with seq <= through_seq; the head and the newest record stay."""
        if isinstance(through_seq, bool) or not isinstance(through_seq, int) or through_seq < 0:
            raise ValueError(f"through_seq must be a non-negative integer, got {through_seq!r}")
        with self._transaction() as conn:
            head = conn.execute("SELECT seq FROM audit_head WHERE id = 1").fetchone()
            last = int(head[0]) if head else 0
            if through_seq >= last and through_seq > 0:
                raise ValueError(f"audit_truncate keeps the newest record: through_seq must be below {last}")
            return conn.execute("DELETE FROM audit WHERE seq <= ?", (through_seq,)).rowcount

    def listen_audit(self, on_seq: Callable[[int], None]) -> None:
        """SQLite cannot push: None, and callers poll ``audit_records(after_seq)``."""
        return None


def _append_audit(conn: sqlite3.Connection, items: list[tuple[dict[str, Any], int]]) -> list[AuditRecord]:
    """Append normalized events in order inside the caller's transaction: head once, chain, head once."""
    records: list[AuditRecord] = []
    head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    seq, prev_hash = (head[0], head[1]) if head else (0, GENESIS_HASH)
    for normalized, at in items:
        seq += 1
        record = build_record(seq, at, normalized, prev_hash)
        conn.execute(
            "INSERT INTO audit (seq, at, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
            (
                record.seq,
                record.at,
                json.dumps(record.event, separators=(",", ":"), sort_keys=True),
                record.prev_hash,
                record.hash,
            ),
        )
        records.append(record)
        prev_hash = record.hash
    conn.execute(
        "INSERT OR REPLACE INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", (records[-1].seq, records[-1].hash)
    )
    return records


def _purge(conn: sqlite3.Connection, now: int) -> None:
    conn.execute(
        "DELETE FROM record_terms WHERE (kind, key) IN "
        "(SELECT kind, key FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?)",
        (now,),
    )
    conn.execute("DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
    conn.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))
