"""The hash-chained audit log: how a record's hash is computed and how a chain is checked.

Both store backends build records with :func:`build_record` and readers check them with
:func:`verify_chain`, so the chain is the same whichever backend wrote it.

Canonical form (the exact bytes that are hashed)::

    hash = lowercase hex of SHA-256( UTF-8( canonical([seq, at, event, prev_hash]) ) )

    canonical(x) = json.dumps(x, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=True, allow_nan=False)

That is: a JSON array of four members in that order; no whitespace; object keys sorted by
Unicode code point; every non-ASCII character escaped as ``\\uXXXX`` (lowercase hex, UTF-16
surrogate pairs above U+FFFF); integers in decimal; floats as Python's shortest round-trip
``repr`` (events should prefer integers and strings); ``true``/``false``/``null``; NaN and
infinities are refused. ``seq`` counts from 1 with no gaps, ``at`` is integer seconds since
the epoch, ``prev_hash`` is the previous record's ``hash`` (64 zeros for record 1).

What the chain proves, and what it does not: an edited, removed, reordered or inserted record
breaks the chain (``verify_chain`` names the record). Someone who can write to the store can
also recompute every later hash, so a rewrite of the whole tail is only caught against a head
kept elsewhere: ``audit verify`` prints the head (seq and hash) to be kept outside the store,
and ``--anchor SEQ:HASH`` checks the log still contains exactly that record. Removing the last
records is caught at the next append (the store keeps its append cursor apart from the
records, so the next record's seq leaves a gap) or by an anchor.

Accesses without an fsync per request (:class:`AccessAudit`, issue 12)
-----------------------------------------------------------------------

The promise: no bytes leave for a holder and an object unless that access is durably in the
log, and an acknowledged grant or revocation is never lost (those are written by the DAC's own
store transactions, untouched by what follows). A genome browser reads one file in hundreds of
small Range requests; one durable append per request (two, with the transfer) made the log the
gateway's bottleneck. So each serving process keeps an :class:`AccessAudit`:

- **The first decision of a window is durable before the answer.** A decision is keyed by
  (holder, credential, dataset, object, outcome, reason, route, purpose); ``credential`` is a
  digest of the presented token, held in memory only, never written. The first decision of a
  key appends its full record (``gateway.decision``) with :meth:`Kernel.audit_append`, which
  returns only once the record is committed (group commit shares one fsync among concurrent
  callers); the gateway sends nothing before that call returns, and a failed append is a 503.
  A concurrent request for the same key waits for that same append, so neither answers early.
- **Repeats and transfers are counted in memory.** A later decision of the same key within
  ``window_seconds`` of its first one only adds to a counter; every finished transfer adds to
  a counter of (holder, dataset, object, route, result) with its bytes, first and last time.
- **Counters are flushed within ``flush_seconds`` (at most 1 s)** by a background thread, in
  one store transaction (one fsync) for all keys: one ``gateway.decisions`` record per key
  with repeats (``count``, ``first_at``, ``last_at``, ``first_seq`` = the seq of the durable
  first record) and one ``gateway.transfer`` record per transfer key (``count``,
  ``bytes_sent`` summed, ``first_at``, ``last_at``). They are flushed at shutdown too (the
  process's exit hook and :meth:`close`).
- **A window ends** ``window_seconds`` after its first decision: the next decision of the key
  is a first again, durably. More than ``max_keys`` live windows in a process start every key
  afresh (bounded memory; it can only add durable records, never drop one).

What a crash (kill -9) may lose: the counts of repeats and transfers of the last flush
interval (and a flush that fails because the store is down loses its counts, logged), never
the record of an access, since every (holder, credential, object) that
received bytes had its first decision committed before any of them left. The summaries are
ordinary events, appended through the same chain: ``build_record``, ``verify_chain`` and
``audit verify`` are unchanged. The kill -9 test is ``tests/e2e/test_audit_kill9.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.store.base import AuditProblem, AuditRecord
from broker.store.kernel import Kernel, Tx

log = logging.getLogger("broker.store.audit")

GENESIS_HASH = "0" * 64
# Bound on one event's canonical encoding (UI-09: size capped); audit events are small.
MAX_EVENT_BYTES = 65_536
MAX_EVENT_DEPTH = 32
# Readers put this key alone in ``event`` when a stored event cannot be decoded, so that
# verify_chain reports it (as ``malformed``) instead of the reader raising mid-iteration.
MALFORMED_KEY = "__malformed__"


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value`` (see the module docstring)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def chain_hash(seq: int, at: int, event: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 hex over the canonical encoding of ``[seq, at, event, prev_hash]``."""
    text = canonical_json([seq, at, event, prev_hash])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize_event(event: Any) -> dict[str, Any]:
    """Check an event and return it as plain JSON data (tuples become lists).

    Raises ValueError for anything that does not survive a JSON round trip unchanged:
    a non-object, non-string keys, NaN/infinity, foreign types, deep nesting, or an
    encoding larger than MAX_EVENT_BYTES. The reserved MALFORMED_KEY is refused.
    """
    if not isinstance(event, dict):
        raise ValueError(f"audit event must be a JSON object (dict), got {type(event).__name__}")
    if MALFORMED_KEY in event:
        raise ValueError(f"audit event key {MALFORMED_KEY!r} is reserved")
    _check_value(event, 0)
    text = canonical_json(event)
    if len(text) > MAX_EVENT_BYTES:
        raise ValueError(f"audit event is {len(text)} bytes encoded; the limit is {MAX_EVENT_BYTES}")
    normalized: dict[str, Any] = json.loads(text)
    return normalized


def _check_value(value: Any, depth: int) -> None:
    if depth > MAX_EVENT_DEPTH:
        raise ValueError(f"audit event nests deeper than {MAX_EVENT_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("audit event contains NaN or infinity")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_value(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"audit event keys must be strings, got {type(key).__name__}")
            _check_value(item, depth + 1)
        return
    raise ValueError(f"audit event contains a {type(value).__name__}, which is not JSON data")


def build_record(seq: int, at: int, event: dict[str, Any], prev_hash: str) -> AuditRecord:
    """The record that follows a chain whose last hash is ``prev_hash``.

    ``event`` must already be normalized (``normalize_event``) so the stored event and
    the hashed event are the same data.
    """
    if isinstance(at, bool) or not isinstance(at, int):
        raise ValueError(f"audit time 'at' must be integer seconds, got {type(at).__name__}")
    return AuditRecord(seq=seq, at=at, event=event, prev_hash=prev_hash, hash=chain_hash(seq, at, event, prev_hash))


def encode_audit(record: AuditRecord) -> str:
    """How backends store a whole record as one JSON text (Redis); keys sorted, compact."""
    return canonical_json(
        {"seq": record.seq, "at": record.at, "event": record.event, "prev_hash": record.prev_hash, "hash": record.hash}
    )


def decode_audit(text: str, fallback_seq: int) -> AuditRecord:
    """Parse a stored record (``encode_audit``); never raises.

    A record that cannot be parsed comes back with ``event == {MALFORMED_KEY: reason}``
    and the store's own position as ``seq``, so verification reports it in place.
    """
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        seq, at, event = data["seq"], data["at"], data["event"]
        prev_hash, hash_ = data["prev_hash"], data["hash"]
        if not (
            _is_int(seq)
            and _is_int(at)
            and isinstance(event, dict)
            and isinstance(prev_hash, str)
            and isinstance(hash_, str)
        ):
            raise ValueError("fields of the wrong type")
        return AuditRecord(seq=seq, at=at, event=event, prev_hash=prev_hash, hash=hash_)
    except (ValueError, KeyError, TypeError) as exc:
        return malformed(fallback_seq, f"undecodable record: {exc}")


def decode_event(text: str) -> dict[str, Any]:
    """Parse a stored event (SQLite keeps fields in columns); never raises (see decode_audit)."""
    try:
        event = json.loads(text)
    except (ValueError, TypeError) as exc:
        return {MALFORMED_KEY: f"undecodable event: {exc}"}
    if not isinstance(event, dict):
        return {MALFORMED_KEY: "event is not a JSON object"}
    return event


def malformed(seq: int, reason: str) -> AuditRecord:
    """A placeholder record for a stored entry that cannot be read."""
    return AuditRecord(seq=seq, at=0, event={MALFORMED_KEY: reason}, prev_hash="", hash="")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_anchor(text: str) -> tuple[int, str]:
    """Parse ``SEQ:HASH`` as printed by ``audit verify``; ValueError with the reason."""
    seq_text, sep, hash_ = text.partition(":")
    if not sep or not seq_text.isdigit() or int(seq_text) < 1:
        raise ValueError("expected SEQ:HASH with SEQ a positive integer")
    if len(hash_) != 64 or any(c not in "0123456789abcdef" for c in hash_):
        raise ValueError("expected HASH as 64 lowercase hex digits")
    return int(seq_text), hash_


def verify_chain(
    records: Iterable[AuditRecord], anchor: tuple[int, str] | None = None, start: tuple[int, str] | None = None
) -> list[AuditProblem]:
    """Every problem in a chain read from its start (seq 1), in order; [] when intact.

    ``start=(seq, hash)`` checks a chain that continues after record ``seq`` whose hash was
    ``hash`` instead (the tail left in the store after archiving, or the next archive file):
    the first record must then be ``seq + 1`` with that ``prev_hash``.

    Problem codes (``AuditProblem.problem``):

    - ``malformed``: the stored entry could not be decoded;
    - ``hash_mismatch``: the record's content does not give its stored hash (edited);
    - ``out_of_order``: seq not greater than the previous record's (reordered/duplicated);
    - ``gap``: seq skips numbers (records removed), or the chain does not start at 1;
    - ``chain_broken``: prev_hash is not the previous record's hash (removed, inserted,
      reordered, or a rewritten record whose hash was recomputed);
    - ``anchor_missing`` / ``anchor_mismatch``: the anchored record is absent or differs.

    Consumes ``records`` once, keeping only the previous record, so it runs over logs
    of any length.
    """
    problems: list[AuditProblem] = []
    prev_seq, prev_hash = start if start is not None else (0, GENESIS_HASH)
    anchor_seen = False
    for record in records:
        seq = record.seq
        if MALFORMED_KEY in record.event and len(record.event) == 1:
            problems.append(AuditProblem(seq, "malformed", str(record.event[MALFORMED_KEY])))
            prev_hash = record.hash
            prev_seq = max(prev_seq, seq)
            continue
        try:
            computed = chain_hash(seq, record.at, record.event, record.prev_hash)
        except (ValueError, TypeError) as exc:
            computed = f"<cannot encode: {exc}>"
        if computed != record.hash:
            problems.append(
                AuditProblem(
                    seq, "hash_mismatch", f"stored hash {record.hash[:16]}..., content hashes to {computed[:16]}..."
                )
            )
        if seq <= prev_seq:
            problems.append(AuditProblem(seq, "out_of_order", f"seq {seq} follows seq {prev_seq}"))
        elif seq != prev_seq + 1:
            problems.append(
                AuditProblem(seq, "gap", f"seq {seq} follows seq {prev_seq}: {seq - prev_seq - 1} record(s) missing")
            )
        if record.prev_hash != prev_hash:
            what = "genesis" if prev_seq == 0 else f"record {prev_seq}'s hash"
            problems.append(AuditProblem(seq, "chain_broken", f"prev_hash does not match {what}"))
        if anchor is not None and seq == anchor[0]:
            anchor_seen = True
            if record.hash != anchor[1]:
                problems.append(AuditProblem(seq, "anchor_mismatch", "record differs from the anchored hash"))
        prev_hash = record.hash
        prev_seq = max(prev_seq, seq)
    if anchor is not None and not anchor_seen:
        problems.append(
            AuditProblem(anchor[0], "anchor_missing", f"anchored record {anchor[0]} is not in the log (truncated?)")
        )
    return problems


#: Event fields that name the person an access or a decision is about, in the areas' events:
#: ``subject`` (gateway decisions and transfers), ``identity`` (DAC grants, memberships,
#: registered access), ``identity_id`` (logins and links).
HOLDER_FIELDS = ("subject", "identity", "identity_id")


@dataclass(frozen=True)
class AuditFilter:
    """Which audit records ``audit list`` / ``audit export`` show; every given criterion must hold.

    ``events`` are names (``grants.revoke``) or prefixes ending in a dot (``gateway.``);
    ``holder`` matches any of :data:`HOLDER_FIELDS`, ``actor`` the one who acted, ``dataset``
    the ``dataset`` field; ``since`` / ``until`` bound ``at`` (epoch seconds, ``until`` exclusive).
    Comparison is exact string equality: an audit query must never widen by accident.
    """

    events: tuple[str, ...] = ()
    holder: str | None = None
    actor: str | None = None
    dataset: str | None = None
    since: int | None = None
    until: int | None = None

    def matches(self, record: AuditRecord) -> bool:
        event = record.event
        if self.since is not None and record.at < self.since:
            return False
        if self.until is not None and record.at >= self.until:
            return False
        if self.events:
            name = event.get("event")
            if not isinstance(name, str) or not any(
                name.startswith(e) if e.endswith(".") else name == e for e in self.events
            ):
                return False
        if self.holder is not None and not any(event.get(f) == self.holder for f in HOLDER_FIELDS):
            return False
        if self.actor is not None and event.get("actor") != self.actor:
            return False
        return self.dataset is None or event.get("dataset") == self.dataset

    def select(self, records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        """The matching records of ``records``, in order, streamed."""
        return (record for record in records if self.matches(record))


def record_json(record: AuditRecord) -> dict[str, Any]:
    """One record as ``audit export`` writes it: seq, at, ISO time, the event, and the chain hashes."""
    return {
        "seq": record.seq,
        "at": record.at,
        "time": datetime.fromtimestamp(record.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event": record.event,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


# --------------------------------------------------------------------------- accesses, windowed


#: The most a process holds counters before flushing them (the issue's bound is 1 s).
MAX_FLUSH_SECONDS = 1.0


@dataclass
class _Window:
    """The first decision of one key and what it covers: counted repeats since the last flush."""

    summary: dict[str, Any]  # the first record's fields a repeats summary repeats (not its basis)
    ends_at: float
    durable: threading.Event = field(default_factory=threading.Event)
    failed: bool = False
    first_seq: int = 0
    repeats: int = 0
    first_at: int = 0
    last_at: int = 0


@dataclass
class _Transfers:
    """Finished transfers of one (holder, dataset, object, route, result) since the last flush."""

    event: dict[str, Any]
    count: int = 0
    bytes_sent: int = 0
    first_at: int = 0
    last_at: int = 0


class AccessAudit:
    """Gateway decisions and transfers into the audit log, first ones durably, repeats counted.

    See the module docstring for the design and what a crash may lose. ``decision`` and
    ``transfer`` are called by the gateway's audit hook from any request thread; ``start``
    runs the flusher thread, ``close`` stops it and flushes what is left.
    """

    def __init__(
        self,
        kernel: Kernel,
        *,
        window_seconds: float = 60.0,
        flush_seconds: float = 0.5,
        max_keys: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < flush_seconds <= MAX_FLUSH_SECONDS:
            raise ValueError(f"flush_seconds must be in (0, {MAX_FLUSH_SECONDS}], got {flush_seconds!r}")
        if window_seconds <= 0 or max_keys < 1:
            raise ValueError("window_seconds must be positive and max_keys at least 1")
        self.kernel = kernel
        self.window_seconds = window_seconds
        self.flush_seconds = flush_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._windows: dict[Hashable, _Window] = {}
        self._retired: list[_Window] = []
        self._transfers: dict[Hashable, _Transfers] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ recording

    def decision(self, key: Hashable, make_event: Callable[[], dict[str, Any]]) -> None:
        """Record one decision of ``key``; returns once its access is durably in the log.

        The first decision of a window appends ``make_event()`` (built only then) and waits for the commit (raises what
        the store raises, e.g. StoreUnavailable, so the caller answers 503 and sends nothing).
        A repeat waits only if the first one is still being committed.
        """
        now = self.clock()
        at = int(now)
        while True:
            with self._lock:
                window = self._windows.get(key)
                if window is not None and (window.failed or window.ends_at <= now):
                    self._retire(key, window)
                    window = None
                if window is None:
                    event = make_event()
                    if len(self._windows) >= self.max_keys:
                        for old_key, old in list(self._windows.items()):
                            self._retire(old_key, old)
                    window = _Window({k: event[k] for k in _SUMMARY_FIELDS if k in event}, now + self.window_seconds)
                    self._windows[key] = window
                    first = True
                else:
                    first = False
                    if window.durable.is_set():
                        window.repeats += 1
                        window.first_at = window.first_at or at
                        window.last_at = at
                        return
            if first:
                self._append_first(key, window, event, at)
                return
            window.durable.wait()  # another thread is committing this key's first record
            if not window.failed:
                with self._lock:
                    window.repeats += 1
                    window.first_at = window.first_at or at
                    window.last_at = at
                return
            # That commit failed: this request tries for itself (a first again).

    def _append_first(self, key: Hashable, window: _Window, event: dict[str, Any], at: int) -> None:
        try:
            record = self.kernel.audit_append(event, at)
        except BaseException:
            with self._lock:
                window.failed = True
                if self._windows.get(key) is window:
                    del self._windows[key]
            window.durable.set()
            raise
        window.first_seq = record.seq
        window.durable.set()

    def transfer(self, key: Hashable, make_event: Callable[[], dict[str, Any]], bytes_sent: int) -> None:
        """Count one finished transfer (never blocks on the store); flushed within ``flush_seconds``.

        ``make_event()`` builds the summary's fields, once per key and flush interval.
        """
        at = int(self.clock())
        with self._lock:
            counter = self._transfers.get(key)
            if counter is None:
                counter = self._transfers[key] = _Transfers(make_event(), first_at=at)
            counter.count += 1
            counter.bytes_sent += bytes_sent
            counter.last_at = at

    def _retire(self, key: Hashable, window: _Window) -> None:
        """Under the lock: take ``window`` out of use; its repeats still go out at the next flush."""
        if self._windows.get(key) is window:
            del self._windows[key]
        if window.repeats and not window.failed:
            self._retired.append(window)

    # ------------------------------------------------------------------ flushing

    def pending(self) -> list[dict[str, Any]]:
        """Take the summary events due now (repeats and transfers), resetting the counters."""
        with self._lock:
            windows = [w for w in self._windows.values() if w.repeats and w.durable.is_set() and not w.failed]
            windows += self._retired
            self._retired = []
            transfers, self._transfers = self._transfers, {}
            events = [_repeats_event(w) for w in windows]
            for w in windows:
                w.repeats, w.first_at, w.last_at = 0, 0, 0
        events += [_transfers_event(t) for t in transfers.values()]
        return events

    def flush(self) -> int:
        """Write the due summaries in one transaction; the number written (0 when nothing was due)."""
        with self._flush_lock:
            events = self.pending()
            if not events:
                return 0
            at = int(self.clock())

            def write(tx: Tx) -> None:
                for event in events:
                    tx.audit(event, at)

            self.kernel.transact(write)
            return len(events)

    def start(self) -> AccessAudit:
        """Run the flusher thread (per serving process; never at import)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="access-audit-flush", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the flusher and write what is left (shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.flush_seconds + 5)
            self._thread = None
        try:
            self.flush()
        except Exception:
            log.exception("the last access summaries could not be written")

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception as exc:  # store down: the counters of this flush are lost, logged
                log.warning("access summaries could not be written (%s)", exc.__class__.__name__)


def _repeats_event(window: _Window) -> dict[str, Any]:
    summary = dict(window.summary)
    summary.update(
        event="gateway.decisions",
        count=window.repeats,
        first_at=window.first_at,
        last_at=window.last_at,
        first_seq=window.first_seq,
    )
    return summary


def _transfers_event(counter: _Transfers) -> dict[str, Any]:
    return {
        **counter.event,
        "count": counter.count,
        "bytes_sent": counter.bytes_sent,
        "first_at": counter.first_at,
        "last_at": counter.last_at,
    }


#: What a repeats summary copies from its first decision (not the basis or visas: see first_seq).
_SUMMARY_FIELDS = ("actor", "subject", "dataset", "object_path", "outcome", "reason", "route", "purpose")
