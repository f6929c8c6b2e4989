"""The store kernel: the few operations every backend implements, and nothing more.

Everything the broker keeps is a record on this kernel: a JSON object under ``(kind, key)``,
with an optional expiry and optional index *terms* by which it can be found again. Areas keep
typed records on top of it (:class:`broker.store.records.Records`); the kernel knows no record
type. The operations:

- ``get``, ``get_many``, ``find`` (by term), ``scan`` (a whole kind) read;
- ``put`` writes (replacing the record and its terms), ``add`` writes only if absent,
  ``take`` reads and deletes in one step (single use), ``delete`` removes, ``incr`` counts;
- ``update(kind, key, fn)`` is read-modify-write in one transaction;
- ``transact(fn)`` runs ``fn(tx)`` as one transaction over any records, and may append audit
  events that commit with the change (see :class:`Tx`);
- ``audit_append``, ``audit_records``, ``audit_last_seq`` are the append-only, hash-chained
  audit log (:mod:`broker.store.audit`);
- ``terms_of`` and ``audit_restore`` let a store be copied to another backend record by
  record (:mod:`broker.store.transfer`), ``audit_truncate`` removes archived audit records;
- ``listen_audit`` is an optional push capability: it calls back for every committed audit
  record (PostgreSQL LISTEN/NOTIFY). A backend without it returns None, and the caller polls
  ``audit_records(after_seq)`` instead.

Rules every backend keeps, proven by one suite (:mod:`broker.store.conformance`):

- **Expiry.** A record whose ``expires_at`` (epoch seconds) has passed is never returned, by any
  operation, and is eventually removed. ``None`` means it lives until deleted.
- **Single use.** Of concurrent ``take`` calls for one record, exactly one gets it; of concurrent
  ``add`` calls for one key, exactly one returns True.
- **Transactions.** ``transact(fn)`` is serializable: its reads see one consistent state, and its
  writes and audit events commit together or not at all. Reads inside a transaction see the
  state *before* the transaction (writes are applied at commit), on every backend alike. A
  backend may run ``fn`` more than once (optimistic retry), so ``fn`` must do nothing but read
  and queue writes through ``tx``, and decide only from what it read.
- **Durability.** A call that returned has its write committed (SQLite ``synchronous=FULL``,
  PostgreSQL ``synchronous_commit``, Redis with AOF); nothing is retried behind the caller's back.
- **Failure.** An unreachable or stalled backend raises :class:`~broker.store.base.StoreUnavailable`
  within the store timeout; nothing half-written is left by a failed transaction.
- **Bounds.** Kinds, keys and terms are non-empty strings of at most :data:`MAX_NAME_CHARS`.

Keys and terms are opaque strings; :func:`key_of` builds one from several parts so that no two
different part lists can spell the same key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

from broker.store.base import AuditRecord, Health, StoreError

T = TypeVar("T")

#: The longest kind, key or term a backend accepts.
MAX_NAME_CHARS = 4096
#: Most attempts of an optimistic transaction before it gives up with StoreUnavailable.
MAX_TRANSACTION_ATTEMPTS = 64


@dataclass(frozen=True, slots=True)
class Item:
    """One record as the kernel returns it from ``find`` and ``scan``."""

    key: str
    value: dict[str, Any]
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class Write:
    """What ``update``'s function returns to store: the new value, its expiry and its terms."""

    value: dict[str, Any]
    expires_at: int | None = None
    terms: tuple[str, ...] = ()


class Tx(Protocol):
    """The operations of one transaction (see the module docstring for its rules)."""

    @property
    def now(self) -> int:
        """Epoch seconds at the start of this attempt (expiry is judged against it)."""
        ...

    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def find(self, kind: str, term: str) -> list[Item]: ...

    def put(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> None: ...

    def delete(self, kind: str, key: str) -> None: ...

    def audit(self, event: dict[str, Any], at: int | None = None) -> None:
        """Append ``event`` to the audit log when (and only when) this transaction commits."""
        ...


class Closeable(Protocol):
    """Something running that its owner stops (``listen_audit``'s listener)."""

    def close(self) -> None: ...


@runtime_checkable
class Kernel(Protocol):
    """What every store backend implements (SQLite, Redis, PostgreSQL)."""

    backend: str

    def health(self) -> Health: ...

    def close(self) -> None: ...

    # reads
    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def get_many(self, kind: str, keys: Sequence[str]) -> list[dict[str, Any] | None]: ...

    def find(self, kind: str, term: str) -> list[Item]: ...

    def scan(self, kind: str) -> Iterator[Item]: ...

    # single writes
    def put(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> None: ...

    def add(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> bool: ...

    def take(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def delete(self, kind: str, key: str) -> bool: ...

    def incr(self, kind: str, key: str, *, expires_at: int) -> int:
        """Add 1 to a counter that vanishes at ``expires_at`` (set when it is created); the new count."""
        ...

    # read-modify-write
    def update(self, kind: str, key: str, fn: Callable[[dict[str, Any] | None], Write | None]) -> dict[str, Any] | None:
        """Apply ``fn`` to the current value in one transaction: a Write replaces it, None deletes it.

        Returns the value written (None when deleted). ``fn`` may run more than once.
        """
        ...

    def transact(self, fn: Callable[[Tx], T]) -> T: ...

    # audit log
    def audit_append(self, event: dict[str, Any], at: int) -> AuditRecord: ...

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]: ...

    def audit_last_seq(self) -> int: ...

    def audit_restore(self, records: Iterable[AuditRecord]) -> int:
        """Write records verbatim (original seq, prev_hash, hash) into an empty log; the number written.

        Records must come in increasing seq order (ValueError otherwise); the log must never
        have had a record (:class:`~broker.store.base.Conflict` otherwise). The head moves to
        the last record, so appends continue the restored chain. For moving a store between
        backends; never for ordinary writes.
        """
        ...

    def audit_truncate(self, through_seq: int) -> int:
        """Remove the records with seq <= ``through_seq`` (archived first); the number removed.

        The head stays, so the next append continues the chain. The newest record always
        stays as well: ``through_seq`` at or past it is a ValueError.
        """
        ...

    def listen_audit(self, on_seq: Callable[[int], None]) -> Closeable | None:
        """Call ``on_seq(seq)`` on a background thread for every audit record committed from now on.

        Records from every process are reported, each once and in seq order, including those
        committed while the listener was reconnecting. Returns the running listener (``close()``
        stops it), or None on a backend that cannot push: the caller then polls
        ``audit_records(after_seq)``.
        """
        ...

    # housekeeping
    def kinds(self) -> list[str]:
        """Every kind that holds at least one live record (for export)."""
        ...

    def terms_of(self, kind: str, key: str) -> tuple[str, ...]:
        """The index terms of a live record, sorted; () when it is absent or expired (for export)."""
        ...

    def purge_expired(self) -> None:
        """Remove expired records now (backends also do it on their own)."""
        ...


def key_of(*parts: str) -> str:
    """One key from several parts, unambiguously: each part percent-encoded, joined by ``/``.

    ``key_of("a/b", "c")`` and ``key_of("a", "b/c")`` differ, so an id taken from input can
    never spell another record's key.
    """
    return "/".join(quote(part, safe="") for part in parts)


def check_name(what: str, value: object) -> str:
    """A kind, key or term: a non-empty string of bounded length; ValueError names the field.

    Values often come from tokens (``jti``, ``state``), so a number, an object or a megabyte
    string must be refused here, never stored or matched loosely.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {type(value).__name__}")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{what} is {len(value)} characters; the limit is {MAX_NAME_CHARS}")
    return value


def check_expiry(expires_at: object) -> int | None:
    """An expiry is None or whole epoch seconds (not a bool, not a float)."""
    if expires_at is None:
        return None
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or expires_at < 0:
        raise ValueError(f"expires_at must be whole epoch seconds or None, got {expires_at!r}")
    return expires_at


def check_terms(terms: Sequence[str]) -> tuple[str, ...]:
    """Index terms: distinct, each a valid name (order kept)."""
    out: list[str] = []
    for term in terms:
        check_name("term", term)
        if term not in out:
            out.append(term)
    return tuple(out)


def dump_value(value: dict[str, Any]) -> str:
    """A record value as every backend stores it: compact JSON, no NaN; ValueError for anything else."""
    if not isinstance(value, dict):
        raise ValueError(f"a record value must be a JSON object (dict), got {type(value).__name__}")
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def load_value(text: str | bytes) -> dict[str, Any]:
    """A stored record value; StoreError when it is not a JSON object (a corrupt row)."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"stored record is corrupt: {exc.__class__.__name__}") from None
    if not isinstance(value, dict):
        raise StoreError("stored record is corrupt: not a JSON object")
    return value
