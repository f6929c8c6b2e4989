"""Moving a store between backends, and audit retention: export, import, archive, verify.

Everything here works over the :class:`~broker.store.kernel.Kernel` protocol, so any backend
can be the source or the target (SQLite -> PostgreSQL -> Redis -> SQLite is tested).

**Export format** (JSON lines, UTF-8, one object per line, compact, keys sorted)::

    {"type": "header", "format": "ga4gh-broker-store-export", "version": 1, "backend": ..., "exported_at": ...}
    {"type": "record", "kind": ..., "key": ..., "value": {...}, "expires_at": int|null, "terms": [...]}
    ...
    {"type": "audit", "seq": ..., "at": ..., "event": {...}, "prev_hash": ..., "hash": ...}
    ...
    {"type": "end", "records": N, "audit": M}

Every live record of every kind, then the audit records verbatim (original seq and hashes, so
``verify_chain`` gives the same result on the copy), then a trailer whose counts prove the file
is whole. ``incr`` counters (rate-limit windows) are not exported: they are transient. Export
from a store nothing writes to (stop the broker), or the copy mixes two moments.

**Archive format** (gzip, JSON lines): a header naming the record the file continues (``start``:
seq and hash of the record before its first), the records, and a trailer with the count and the
chain head at the cut; the file name carries that head as well,
``audit-<first seq>-<last seq>-<hash of last>.jsonl.gz``, so a listing of the archive folder is
a list of anchors. :func:`archive` writes the file (mode 0600, fsynced, renamed into place),
reads it back and checks it, and only then removes those records from the store.

Parsing is bounded (line length, file counts) and every problem in an input file is a
:class:`TransferError` naming the line, never an unhandled exception.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from broker.store.audit import GENESIS_HASH, verify_chain
from broker.store.base import AuditProblem, AuditRecord, Conflict, StoreError
from broker.store.kernel import Kernel, Tx

EXPORT_FORMAT = "ga4gh-broker-store-export"
ARCHIVE_FORMAT = "ga4gh-broker-audit-archive"
FORMAT_VERSION = 1
#: Longest line read from an export or archive (a record value or an audit event, JSON-encoded).
MAX_LINE_CHARS = 16 * 1024 * 1024
#: Records added per transaction by ``import_`` (one commit, one fsync, per batch).
IMPORT_BATCH = 200
ARCHIVE_NAME = re.compile(r"audit-(\d{12})-(\d{12})-([0-9a-f]{64})\.jsonl\.gz")


class TransferError(StoreError):
    """An export or archive file that cannot be read as one (bad JSON, wrong shape, cut short)."""

    status = 400
    code = "transfer_invalid"

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


@dataclass(frozen=True)
class TransferSummary:
    """What an export wrote or an import read."""

    records: int
    audit: int
    skipped_expired: int = 0


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False) + "\n"


def _audit_line(record: AuditRecord) -> str:
    return _line(
        {
            "type": "audit",
            "seq": record.seq,
            "at": record.at,
            "event": record.event,
            "prev_hash": record.prev_hash,
            "hash": record.hash,
        }
    )


# ---------------------------------------------------------------------- export / import


def export(kernel: Kernel, out: TextIO) -> TransferSummary:
    """Write every live record of every kind and the whole audit log to ``out`` (format above)."""
    out.write(
        _line(
            {
                "type": "header",
                "format": EXPORT_FORMAT,
                "version": FORMAT_VERSION,
                "backend": kernel.backend,
                "exported_at": int(time.time()),
            }
        )
    )
    records = audit = 0
    for kind in kernel.kinds():
        for item in kernel.scan(kind):
            terms = kernel.terms_of(kind, item.key)
            out.write(
                _line(
                    {
                        "type": "record",
                        "kind": kind,
                        "key": item.key,
                        "value": item.value,
                        "expires_at": item.expires_at,
                        "terms": list(terms),
                    }
                )
            )
            records += 1
    for record in kernel.audit_records(0):
        out.write(_audit_line(record))
        audit += 1
    out.write(_line({"type": "end", "records": records, "audit": audit}))
    return TransferSummary(records=records, audit=audit)


def _bounded_lines(handle: IO[str]) -> Iterator[str]:
    """Lines of a text file, each read with a bound (an overlong one is then refused by _Entries)."""
    while text := handle.readline(MAX_LINE_CHARS + 1):
        yield text


class _Entries:
    """Numbered JSON objects from lines, each bounded and checked to be an object with a ``type``."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.number = 0

    def next(self) -> dict[str, Any] | None:
        for text in self._lines:
            self.number += 1
            if len(text) > MAX_LINE_CHARS:
                raise TransferError(f"longer than {MAX_LINE_CHARS} characters", self.number)
            if not text.strip():
                continue
            try:
                entry = json.loads(text)
            except ValueError as exc:
                raise TransferError(f"not JSON ({exc.__class__.__name__})", self.number) from None
            if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
                raise TransferError("expected a JSON object with a 'type'", self.number)
            return entry
        return None


def _int(entry: dict[str, Any], field: str, line: int, *, optional: bool = False) -> int | None:
    value = entry.get(field)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TransferError(f"'{field}' must be an integer", line)
    return value


def _audit_record(entry: dict[str, Any], line: int) -> AuditRecord:
    seq, at = _int(entry, "seq", line), _int(entry, "at", line)
    event, prev_hash, hash_ = entry.get("event"), entry.get("prev_hash"), entry.get("hash")
    if not isinstance(event, dict) or not isinstance(prev_hash, str) or not isinstance(hash_, str):
        raise TransferError("an audit line needs an object 'event' and string 'prev_hash' and 'hash'", line)
    assert seq is not None and at is not None
    return AuditRecord(seq=seq, at=at, event=event, prev_hash=prev_hash, hash=hash_)


def _require_empty(kernel: Kernel) -> None:
    kinds = kernel.kinds()
    last = kernel.audit_last_seq()
    if kinds or last:
        held = ", ".join(kinds[:5]) + (" ..." if len(kinds) > 5 else "")
        raise Conflict(
            "import needs an empty store; this one holds "
            + (f"records of {held}" if kinds else "")
            + (" and " if kinds and last else "")
            + (f"audit records up to seq {last}" if last else "")
        )


@dataclass(frozen=True)
class _Record:
    line: int
    kind: str
    key: str
    value: dict[str, Any]
    expires_at: int | None
    terms: list[str]


def _add_all(kernel: Kernel, batch: list[_Record]) -> int:
    """Add a batch of records in one transaction (one commit); a key already present is refused."""
    if not batch:
        return 0
    seen: set[tuple[str, str]] = set()
    for record in batch:
        if (record.kind, record.key) in seen:
            raise TransferError(f"record {record.kind}/{record.key[:64]!r} appears twice", record.line)
        seen.add((record.kind, record.key))

    def add(tx: Tx) -> None:
        for record in batch:
            if tx.get(record.kind, record.key) is not None:
                raise TransferError(f"record {record.kind}/{record.key[:64]!r} appears twice", record.line)
            try:
                tx.put(record.kind, record.key, record.value, expires_at=record.expires_at, terms=record.terms)
            except ValueError as exc:
                raise TransferError(f"record refused by the store: {exc}", record.line) from None

    kernel.transact(add)
    return len(batch)


def import_(kernel: Kernel, lines: Iterable[str]) -> TransferSummary:
    """Read an export into an EMPTY store of any backend (Conflict when it is not empty).

    Records are added in transactions of :data:`IMPORT_BATCH` (a key twice in the file is
    refused); records whose expiry has passed meanwhile are skipped and counted. The audit records are restored verbatim
    (:meth:`~broker.store.kernel.Kernel.audit_restore`), so the chain verifies with the same
    hashes. A file cut short, or with a count that does not match its trailer, is a
    TransferError; the records read before it are then in the store, so empty it before trying
    again.
    """
    _require_empty(kernel)
    entries = _Entries(lines)
    header = entries.next()
    if header is None or header.get("type") != "header" or header.get("format") != EXPORT_FORMAT:
        raise TransferError(f"not a ga4gh-broker store export (no {EXPORT_FORMAT!r} header)", entries.number or 1)
    if header.get("version") != FORMAT_VERSION:
        raise TransferError(f"export format version {header.get('version')!r}; this broker reads {FORMAT_VERSION}")
    records = skipped = 0
    now = int(time.time())
    batch: list[_Record] = []
    entry = entries.next()
    while entry is not None and entry["type"] == "record":
        line = entries.number
        kind, key, value, terms = entry.get("kind"), entry.get("key"), entry.get("value"), entry.get("terms", [])
        expires_at = _int(entry, "expires_at", line, optional=True)
        if not isinstance(kind, str) or not isinstance(key, str) or not isinstance(value, dict):
            raise TransferError("a record line needs string 'kind' and 'key' and an object 'value'", line)
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise TransferError("'terms' must be a list of strings", line)
        if expires_at is not None and expires_at <= now:
            skipped += 1
        else:
            batch.append(_Record(line, kind, key, value, expires_at, terms))
            if len(batch) >= IMPORT_BATCH:
                records += _add_all(kernel, batch)
                batch = []
        entry = entries.next()
    records += _add_all(kernel, batch)

    audit = 0
    if entry is not None and entry["type"] == "audit":
        first = entry
        following: list[dict[str, Any] | None] = [None]

        def stream() -> Iterator[AuditRecord]:
            current: dict[str, Any] | None = first
            while current is not None and current["type"] == "audit":
                yield _audit_record(current, entries.number)
                current = entries.next()
            following[0] = current

        try:
            audit = kernel.audit_restore(stream())
        except ValueError as exc:
            raise TransferError(f"audit records refused: {exc}", entries.number) from None
        entry = following[0]

    if entry is None:
        raise TransferError("the export ends before its trailer: the file is incomplete", entries.number)
    if entry["type"] != "end":
        raise TransferError(f"unexpected {entry['type']!r} line (records, then audit, then end)", entries.number)
    expected = (_int(entry, "records", entries.number), _int(entry, "audit", entries.number))
    if expected != (records + skipped, audit):
        raise TransferError(
            f"the trailer counts {expected[0]} records and {expected[1]} audit records, "
            f"the file holds {records + skipped} and {audit}",
            entries.number,
        )
    if entries.next() is not None:
        raise TransferError("lines after the trailer", entries.number)
    return TransferSummary(records=records, audit=audit, skipped_expired=skipped)


# ---------------------------------------------------------------------- audit retention


def archive_name(first_seq: int, last_seq: int, last_hash: str) -> str:
    """The file name of an archive of records first..last whose last hash is ``last_hash``."""
    return f"audit-{first_seq:012d}-{last_seq:012d}-{last_hash}.jsonl.gz"


def archive(kernel: Kernel, before_at: int, folder: str | os.PathLike[str]) -> Path | None:
    """Move the oldest audit records (``at`` < ``before_at``) to a gzip file in ``folder``; its path.

    The records archived are the longest run from the start of the live log whose ``at`` is
    before ``before_at``, never the newest record (it stays, with the head, so the chain goes
    on). None when there is nothing to archive. The file is complete and checked before any
    record leaves the store; a failure after writing it leaves the store unchanged, and the
    next run writes the same file again.
    """
    if isinstance(before_at, bool) or not isinstance(before_at, int):
        raise ValueError(f"before_at must be integer epoch seconds, got {before_at!r}")
    target = Path(folder)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    newest = kernel.audit_last_seq()
    fd, temp_name = tempfile.mkstemp(prefix=".audit-", suffix=".partial", dir=target)
    temp = Path(temp_name)
    try:
        first: AuditRecord | None = None
        last: AuditRecord | None = None
        count = 0
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped:
                for record in kernel.audit_records(0):
                    if record.seq >= newest or record.at >= before_at:
                        break
                    if first is None:
                        first = record
                        header = {
                            "type": "header",
                            "format": ARCHIVE_FORMAT,
                            "version": FORMAT_VERSION,
                            "start": {"seq": record.seq - 1, "hash": record.prev_hash},
                            "before_at": before_at,
                            "archived_at": int(time.time()),
                        }
                        zipped.write(_line(header).encode("utf-8"))
                    zipped.write(_audit_line(record).encode("utf-8"))
                    last, count = record, count + 1
                if first is None or last is None:
                    temp.unlink()
                    return None
                trailer = {"type": "end", "count": count, "last_seq": last.seq, "hash": last.hash}
                zipped.write(_line(trailer).encode("utf-8"))
            raw.flush()
            os.fsync(raw.fileno())
        path = target / archive_name(first.seq, last.seq, last.hash)
        os.replace(temp, path)
        _fsync_dir(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    problems = verify_archive([path], [], start=(first.seq - 1, first.prev_hash))
    if problems:
        path.unlink()
        raise StoreError(
            f"audit records {first.seq}..{last.seq} do not verify as archived ({problems[0].problem} at seq "
            f"{problems[0].seq}); nothing was removed from the store: run `ga4gh-broker audit verify`"
        )
    kernel.audit_truncate(last.seq)
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _ArchiveFile:
    path: Path
    first_seq: int


def _read_header(path: Path) -> _ArchiveFile:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            text = handle.readline(MAX_LINE_CHARS + 1)
        if len(text) > MAX_LINE_CHARS:
            raise ValueError("header line too long")
        header = json.loads(text)
    except (OSError, EOFError, ValueError) as exc:
        raise TransferError(f"{path.name}: not a readable audit archive ({exc.__class__.__name__})") from None
    start = header.get("start") if isinstance(header, dict) else None
    if (
        not isinstance(header, dict)
        or header.get("format") != ARCHIVE_FORMAT
        or header.get("version") != FORMAT_VERSION
        or not isinstance(start, dict)
        or isinstance(start.get("seq"), bool)
        or not isinstance(start.get("seq"), int)
        or not isinstance(start.get("hash"), str)
    ):
        raise TransferError(f"{path.name}: no {ARCHIVE_FORMAT!r} version {FORMAT_VERSION} header")
    return _ArchiveFile(path, start["seq"] + 1)


def verify_archive(
    files: Iterable[str | os.PathLike[str]],
    live_records: Iterable[AuditRecord],
    start: tuple[int, str] | None = None,
) -> list[AuditProblem]:
    """Check archive files and the live tail as ONE chain; every problem in seq order, [] when intact.

    Files are ordered by their first seq. The chain must begin at seq 1 (genesis) unless
    ``start=(seq, hash)`` says which record it continues (when older archives were deleted on
    purpose). A problem inside a file names the file; a file whose trailer is missing or does
    not match its records or its name is reported as ``archive_invalid``. Live records already
    in an archive (a truncate that did not happen) are skipped.
    """
    extra: list[AuditProblem] = []
    archives: list[_ArchiveFile] = []
    for name in files:
        try:
            archives.append(_read_header(Path(name)))
        except TransferError as exc:
            extra.append(AuditProblem(0, "archive_invalid", str(exc)))
    archives.sort(key=lambda a: a.first_seq)
    where: list[tuple[int, int, str]] = []
    archived_through = [0]

    def chain() -> Iterator[AuditRecord]:
        for item in archives:
            last_seen: AuditRecord | None = None
            count = 0
            trailer: dict[str, Any] | None = None
            try:
                with gzip.open(item.path, "rt", encoding="utf-8") as handle:
                    entries = _Entries(_bounded_lines(handle))
                    entries.next()  # the header, read already
                    while (entry := entries.next()) is not None:
                        if entry["type"] == "end":
                            trailer = entry
                            break
                        if entry["type"] != "audit":
                            raise TransferError(f"unexpected {entry['type']!r} line", entries.number)
                        record = _audit_record(entry, entries.number)
                        last_seen, count = record, count + 1
                        yield record
            except (OSError, EOFError, UnicodeDecodeError, TransferError) as exc:
                seq = last_seen.seq if last_seen else item.first_seq
                extra.append(AuditProblem(seq, "malformed", f"{item.path.name}: {exc}"))
            if last_seen is not None:
                where.append((item.first_seq, last_seen.seq, item.path.name))
                archived_through[0] = max(archived_through[0], last_seen.seq)
            _check_trailer(item, trailer, count, last_seen, extra)
        for record in live_records:
            if record.seq > archived_through[0]:
                yield record

    problems = verify_chain(chain(), start=start if start is not None else (0, GENESIS_HASH))
    located = []
    for problem in problems:
        names = [n for lo, hi, n in where if lo <= problem.seq <= hi]
        located.append(
            AuditProblem(problem.seq, problem.problem, f"{problem.detail} (in {names[0]})") if names else problem
        )
    return sorted(located + extra, key=lambda p: p.seq)


def _check_trailer(
    item: _ArchiveFile,
    trailer: dict[str, Any] | None,
    count: int,
    last: AuditRecord | None,
    problems: list[AuditProblem],
) -> None:
    """The trailer and the file name must agree with the records the file holds."""
    seq = last.seq if last else item.first_seq
    if trailer is None:
        problems.append(AuditProblem(seq, "archive_invalid", f"{item.path.name}: no trailer (cut short?)"))
        return
    if trailer.get("count") != count or last is None or trailer.get("last_seq") != last.seq:
        problems.append(
            AuditProblem(seq, "archive_invalid", f"{item.path.name}: trailer says {trailer.get('count')!r} records")
        )
        return
    if trailer.get("hash") != last.hash:
        problems.append(
            AuditProblem(seq, "archive_invalid", f"{item.path.name}: trailer hash is not the last record's")
        )
    named = ARCHIVE_NAME.fullmatch(item.path.name)
    if named and (int(named.group(1)), int(named.group(2)), named.group(3)) != (item.first_seq, last.seq, last.hash):
        problems.append(AuditProblem(seq, "archive_invalid", f"{item.path.name}: the name does not match the records"))
