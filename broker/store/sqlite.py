"""The SQLite backend: one file, safe for many threads and many processes at once.

Durability: WAL journal with ``synchronous=FULL``, so a call that returned has its write
fsynced (DESIGN rule 7; ``tests/store/test_durability.py`` SIGKILLs a writer to prove it).

Concurrency: a small pool of connections (one per concurrent caller, never shared by two
threads at once; a forked child never reuses its parent's). Writes that read before they
write run in ``BEGIN IMMEDIATE`` transactions, which take SQLite's single write lock up
front, so they are serialized across threads and processes; a caller waits for the lock at
most ``timeout`` seconds (``busy_timeout``) and then gets StoreUnavailable. Single-use
records are taken with one ``DELETE ... RETURNING`` statement.

Lifetimes: every read compares the stored expiry with the clock, so an expired record is
never returned even before it is purged; expired rows are deleted opportunistically at most
once per PURGE_INTERVAL seconds per process, during a write.

Every sqlite3 error becomes a StoreError: StoreUnavailable when the database cannot be
opened, read or locked in time (the web layer answers 503), StoreError otherwise.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from broker.store import check_name, check_ttl, decode_record, encode_record, family_marker_until
from broker.store.audit import GENESIS_HASH, build_record, decode_event, normalize_event
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

PURGE_INTERVAL = 60.0
MAX_IDLE_CONNECTIONS = 16
AUDIT_PAGE = 500
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identity_links (
    iss TEXT NOT NULL, sub TEXT NOT NULL, identity_id TEXT NOT NULL, linked_at INTEGER NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (iss, sub));
CREATE INDEX IF NOT EXISTS identity_links_by_identity ON identity_links (identity_id);
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY, identity_id TEXT NOT NULL, dataset TEXT NOT NULL, granted_at INTEGER NOT NULL,
    data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS grants_by_identity ON grants (identity_id);
CREATE INDEX IF NOT EXISTS grants_by_dataset ON grants (dataset);
CREATE TABLE IF NOT EXISTS clients (client_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (
    kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY, family_id TEXT NOT NULL, expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE TABLE IF NOT EXISTS revoked_families (family_id TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS consents (
    identity_id TEXT NOT NULL, client_id TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (identity_id, client_id));
CREATE TABLE IF NOT EXISTS revoked_tokens (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS keys (kid TEXT PRIMARY KEY, created_at INTEGER NOT NULL, data TEXT NOT NULL);
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


class SQLiteStore:
    """The ``Store`` protocol on one SQLite file (see the module docstring)."""

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
            # A store-level refusal (Conflict, ValueError) leaves the connection fine to reuse.
            self._release(conn, healthy=not isinstance(exc, sqlite3.Error))
            raise
        self._release(conn, healthy=True)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from the start (BEGIN IMMEDIATE)."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _run(self, sql: str, params: tuple[Any, ...]) -> int:
        """One statement in autocommit mode; its row count."""
        with self._connection() as conn:
            return conn.execute(sql, params).rowcount

    @_guarded
    def _init_schema(self) -> None:
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"sqlite: {self.path} has schema version {version}, newer than this "
                    f"broker's {SCHEMA_VERSION}; upgrade the broker"
                )
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _maybe_purge(self) -> None:
        """Delete expired rows, at most once per PURGE_INTERVAL in this process."""
        now_mono = time.monotonic()
        if now_mono < self._next_purge:
            return
        self._next_purge = now_mono + PURGE_INTERVAL
        now = time.time()
        with self._transaction() as conn:
            conn.execute("DELETE FROM tickets WHERE expires_at <= ?", (now,))
            conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            conn.execute("DELETE FROM refresh_tokens WHERE expires_at <= ?", (int(now),))
            conn.execute("DELETE FROM revoked_families WHERE until <= ?", (int(now),))
            conn.execute("DELETE FROM revoked_tokens WHERE expires_at <= ?", (int(now),))

    @_guarded
    def purge_expired(self) -> None:
        """Delete every expired row now (normally done on its own during writes)."""
        self._next_purge = 0.0
        self._maybe_purge()

    # ------------------------------------------------------------------ lifecycle

    @_guarded
    def health(self) -> Health:
        """Ready when the file answers; warns when it is not in WAL mode."""
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

    # ------------------------------------------------------------------ identities

    @_guarded
    def put_identity(self, identity: Identity) -> None:
        check_name("identity id", identity.id)
        self._run("INSERT OR REPLACE INTO identities (id, data) VALUES (?, ?)", (identity.id, encode_record(identity)))

    @_guarded
    def get_identity(self, identity_id: str) -> Identity | None:
        row = self._one("SELECT data FROM identities WHERE id = ?", (identity_id,))
        return decode_record(Identity, row[0]) if row else None

    @_guarded
    def link_identity(self, link: IdentityLink) -> None:
        check_name("identity id", link.identity_id)
        check_name("upstream iss", link.iss)
        check_name("upstream sub", link.sub)
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT identity_id FROM identity_links WHERE iss = ? AND sub = ?", (link.iss, link.sub)
            ).fetchone()
            if row and row[0] != link.identity_id:
                raise Conflict("this upstream identity {iss, sub} is already linked to another account")
            conn.execute(
                "INSERT OR REPLACE INTO identity_links (iss, sub, identity_id, linked_at, data) VALUES (?, ?, ?, ?, ?)",
                (link.iss, link.sub, link.identity_id, link.linked_at, encode_record(link)),
            )

    @_guarded
    def find_link(self, iss: str, sub: str) -> IdentityLink | None:
        row = self._one("SELECT data FROM identity_links WHERE iss = ? AND sub = ?", (iss, sub))
        return decode_record(IdentityLink, row[0]) if row else None

    @_guarded
    def links_of(self, identity_id: str) -> list[IdentityLink]:
        rows = self._all(
            "SELECT data FROM identity_links WHERE identity_id = ? ORDER BY linked_at, iss, sub", (identity_id,)
        )
        return [decode_record(IdentityLink, r[0]) for r in rows]

    # ------------------------------------------------------------------ grants

    @_guarded
    def put_grant(self, grant: Grant) -> None:
        check_name("grant id", grant.id)
        self._run(
            "INSERT OR REPLACE INTO grants (id, identity_id, dataset, granted_at, data) VALUES (?, ?, ?, ?, ?)",
            (grant.id, grant.identity_id, grant.dataset, grant.granted_at, encode_record(grant)),
        )

    @_guarded
    def get_grant(self, grant_id: str) -> Grant | None:
        row = self._one("SELECT data FROM grants WHERE id = ?", (grant_id,))
        return decode_record(Grant, row[0]) if row else None

    @_guarded
    def grants_of(self, identity_id: str) -> list[Grant]:
        rows = self._all("SELECT data FROM grants WHERE identity_id = ? ORDER BY granted_at, id", (identity_id,))
        return [decode_record(Grant, r[0]) for r in rows]

    @_guarded
    def grants_for_dataset(self, dataset: str) -> list[Grant]:
        rows = self._all("SELECT data FROM grants WHERE dataset = ? ORDER BY granted_at, id", (dataset,))
        return [decode_record(Grant, r[0]) for r in rows]

    # ------------------------------------------------------------------ clients

    @_guarded
    def put_client(self, client: Client) -> None:
        check_name("client id", client.client_id)
        self._run(
            "INSERT OR REPLACE INTO clients (client_id, data) VALUES (?, ?)", (client.client_id, encode_record(client))
        )

    @_guarded
    def get_client(self, client_id: str) -> Client | None:
        row = self._one("SELECT data FROM clients WHERE client_id = ?", (client_id,))
        return decode_record(Client, row[0]) if row else None

    @_guarded
    def list_clients(self) -> list[Client]:
        return [decode_record(Client, r[0]) for r in self._all("SELECT data FROM clients ORDER BY client_id", ())]

    @_guarded
    def delete_client(self, client_id: str) -> bool:
        return self._run("DELETE FROM clients WHERE client_id = ?", (client_id,)) > 0

    # ------------------------------------------------------------------ single-use tickets

    @_guarded
    def put_ticket(self, kind: str, key: str, value: dict[str, Any], ttl: int) -> None:
        check_name("ticket kind", kind)
        check_name("ticket key", key)
        check_ttl(ttl)
        self._maybe_purge()
        self._run(
            "INSERT OR REPLACE INTO tickets (kind, key, value, expires_at) VALUES (?, ?, ?, ?)",
            (kind, key, json.dumps(value, separators=(",", ":")), time.time() + ttl),
        )

    @_guarded
    def add_ticket(self, kind: str, key: str, value: dict[str, Any], ttl: int) -> bool:
        check_name("ticket kind", kind)
        check_name("ticket key", key)
        check_ttl(ttl)
        self._maybe_purge()
        now = time.time()
        # One statement: insert, or take over a row whose lifetime has ended; else nothing.
        count = self._run(
            "INSERT INTO tickets (kind, key, value, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at "
            "WHERE tickets.expires_at <= ?",
            (kind, key, json.dumps(value, separators=(",", ":")), now + ttl, now),
        )
        return count > 0

    @_guarded
    def consume_ticket(self, kind: str, key: str) -> dict[str, Any] | None:
        with self._connection() as conn:
            rows = conn.execute(
                "DELETE FROM tickets WHERE kind = ? AND key = ? RETURNING value, expires_at", (kind, key)
            ).fetchall()
        if not rows or rows[0][1] <= time.time():
            return None
        value: dict[str, Any] = json.loads(rows[0][0])
        return value

    @_guarded
    def peek_ticket(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self._one(
            "SELECT value FROM tickets WHERE kind = ? AND key = ? AND expires_at > ?", (kind, key, time.time())
        )
        return json.loads(row[0]) if row else None

    # ------------------------------------------------------------------ refresh tokens

    @_guarded
    def put_refresh_token(self, token: RefreshToken) -> None:
        """Insert or replace; a token of a revoked family is not kept (revoked at birth)."""
        check_name("token hash", token.token_hash)
        check_name("family id", token.family_id)
        self._maybe_purge()
        now = int(time.time())
        with self._transaction() as conn:
            revoked = conn.execute(
                "SELECT until FROM revoked_families WHERE family_id = ? AND until > ?", (token.family_id, now)
            ).fetchone()
            if revoked:
                conn.execute(
                    "UPDATE revoked_families SET until = max(until, ?) WHERE family_id = ?",
                    (token.expires_at, token.family_id),
                )
                return
            conn.execute(
                "INSERT OR REPLACE INTO refresh_tokens (token_hash, family_id, expires_at, used, data) "
                "VALUES (?, ?, ?, ?, ?)",
                (token.token_hash, token.family_id, token.expires_at, int(token.used), encode_record(token)),
            )

    @_guarded
    def use_refresh_token(self, token_hash: str) -> RefreshToken | None:
        now = int(time.time())
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT data, used, expires_at FROM refresh_tokens WHERE token_hash = ?", (token_hash,)
            ).fetchone()
            if row is None or row[2] <= now:
                return None
            if not row[1]:
                conn.execute("UPDATE refresh_tokens SET used = 1 WHERE token_hash = ?", (token_hash,))
        return replace(decode_record(RefreshToken, row[0]), used=bool(row[1]))

    @_guarded
    def revoke_family(self, family_id: str) -> int:
        """Delete the family's tokens and mark it revoked; the number of live tokens removed."""
        check_name("family id", family_id)
        now = int(time.time())
        with self._transaction() as conn:
            live, latest = conn.execute(
                "SELECT count(*) FILTER (WHERE expires_at > ?), max(expires_at) FROM refresh_tokens "
                "WHERE family_id = ?",
                (now, family_id),
            ).fetchone()
            conn.execute("DELETE FROM refresh_tokens WHERE family_id = ?", (family_id,))
            until = family_marker_until(now, latest)
            conn.execute(
                "INSERT INTO revoked_families (family_id, until) VALUES (?, ?) "
                "ON CONFLICT (family_id) DO UPDATE SET until = max(until, excluded.until)",
                (family_id, until),
            )
        return int(live)

    @_guarded
    def family_revoked(self, family_id: str) -> bool:
        return (
            self._one("SELECT 1 FROM revoked_families WHERE family_id = ? AND until > ?", (family_id, int(time.time())))
            is not None
        )

    # ------------------------------------------------------------------ sessions

    @_guarded
    def put_session(self, session_id: str, data: dict[str, Any], ttl: int) -> None:
        check_name("session id", session_id)
        check_ttl(ttl)
        self._maybe_purge()
        self._run(
            "INSERT OR REPLACE INTO sessions (id, data, expires_at) VALUES (?, ?, ?)",
            (session_id, json.dumps(data, separators=(",", ":")), time.time() + ttl),
        )

    @_guarded
    def get_session(self, session_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT data FROM sessions WHERE id = ? AND expires_at > ?", (session_id, time.time()))
        return json.loads(row[0]) if row else None

    @_guarded
    def delete_session(self, session_id: str) -> None:
        self._run("DELETE FROM sessions WHERE id = ?", (session_id,))

    # ------------------------------------------------------------------ consents

    @_guarded
    def put_consent(self, consent: Consent) -> None:
        check_name("identity id", consent.identity_id)
        check_name("client id", consent.client_id)
        self._run(
            "INSERT OR REPLACE INTO consents (identity_id, client_id, data) VALUES (?, ?, ?)",
            (consent.identity_id, consent.client_id, encode_record(consent)),
        )

    @_guarded
    def get_consent(self, identity_id: str, client_id: str) -> Consent | None:
        row = self._one("SELECT data FROM consents WHERE identity_id = ? AND client_id = ?", (identity_id, client_id))
        return decode_record(Consent, row[0]) if row else None

    @_guarded
    def consents_of(self, identity_id: str) -> list[Consent]:
        rows = self._all("SELECT data FROM consents WHERE identity_id = ? ORDER BY client_id", (identity_id,))
        return [decode_record(Consent, r[0]) for r in rows]

    @_guarded
    def delete_consent(self, identity_id: str, client_id: str) -> bool:
        return self._run("DELETE FROM consents WHERE identity_id = ? AND client_id = ?", (identity_id, client_id)) > 0

    # ------------------------------------------------------------------ revoked token ids

    @_guarded
    def revoke_token_id(self, jti: str, expires_at: int) -> None:
        """Remember ``jti`` as revoked until ``expires_at`` (pass the token's exp plus leeway)."""
        check_name("token id", jti)
        self._maybe_purge()
        self._run(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) "
            "ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
            (jti, int(expires_at)),
        )

    @_guarded
    def is_token_revoked(self, jti: str) -> bool:
        return (
            self._one("SELECT 1 FROM revoked_tokens WHERE jti = ? AND expires_at > ?", (jti, int(time.time())))
            is not None
        )

    # ------------------------------------------------------------------ signing keys

    @_guarded
    def put_key(self, key: KeyRecord) -> None:
        check_name("kid", key.kid)
        self._run(
            "INSERT OR REPLACE INTO keys (kid, created_at, data) VALUES (?, ?, ?)",
            (key.kid, key.created_at, encode_record(key)),
        )

    @_guarded
    def list_keys(self) -> list[KeyRecord]:
        return [decode_record(KeyRecord, r[0]) for r in self._all("SELECT data FROM keys ORDER BY created_at, kid", ())]

    @_guarded
    def delete_key(self, kid: str) -> None:
        self._run("DELETE FROM keys WHERE kid = ?", (kid,))

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
        """Append records in order under one write lock: read the head once, chain, move the head once."""
        records: list[AuditRecord] = []
        with self._transaction() as conn:
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
                "INSERT OR REPLACE INTO audit_head (id, seq, hash) VALUES (1, ?, ?)",
                (records[-1].seq, records[-1].hash),
            )
        return records

    @_guarded
    def audit_last_seq(self) -> int:
        """The seq of the newest record, read from the head (0 for an empty log)."""
        rows = self._all("SELECT seq FROM audit_head WHERE id = 1", ())
        return int(rows[0][0]) if rows else 0

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]:
        """Records with seq > after_seq in seq order, read in pages (any log length)."""
        cursor = after_seq
        while True:
            try:
                rows = self._all(
                    "SELECT seq, at, event, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                    (cursor, AUDIT_PAGE),
                )
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
            for seq, at, event, prev_hash, hash_ in rows:
                yield AuditRecord(seq=seq, at=at, event=decode_event(event), prev_hash=prev_hash, hash=hash_)
            if len(rows) < AUDIT_PAGE:
                return
            cursor = rows[-1][0]
