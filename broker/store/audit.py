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
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from broker.store.base import AuditProblem, AuditRecord

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
