"""Command-line commands of broker.store (registered by broker.cli).

- ``audit verify [--anchor SEQ:HASH] [--archive FILE...]`` reads the whole audit log from the
  configured store (and the archive files, as one chain with it) and checks its hash chain.
  Exit 0 with ``OK`` and the record count when intact; exit 1 with one line per problem.
- ``audit list`` / ``audit export`` show the records that match filters (holder, actor, dataset,
  event, time): ``list`` the newest as a table, ``export`` all of them as JSON lines with their
  chain hashes. Both only read: a missing SQLite store is an error, never created.
- ``audit archive --before DATE --to FOLDER`` moves the audit records older than DATE into a
  compressed JSON-lines file (:func:`broker.store.transfer.archive`).
- ``store migrate`` applies the PostgreSQL schema migrations (a no-op when current).
- ``store export [--out FILE]`` / ``store import FILE``: every record and the audit chain, as
  JSON lines, out of one store and into an empty store of any backend.
- ``store backup PATH``: a consistent copy of the SQLite file while the broker runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from broker.cli.context import CommandError, Context
from broker.settings import DEFAULTS
from broker.store import open_kernel
from broker.store.audit import HOLDER_FIELDS, AuditFilter, parse_anchor, record_json, verify_chain
from broker.store.base import AuditRecord, StoreError
from broker.store.kernel import Kernel
from broker.store.transfer import TransferError, archive, export, import_, verify_archive


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``audit verify``, ``audit archive`` and ``store migrate|export|import|backup``."""
    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    audit_sub.required = True
    verify = audit_sub.add_parser(
        "verify",
        help="check the audit log's hash chain; exit 1 if any record was edited, removed, reordered or inserted",
    )
    verify.add_argument(
        "--anchor",
        metavar="SEQ:HASH",
        default=None,
        help="a head printed by an earlier run and kept outside the store: the log must still hold "
        "exactly this record (catches a rewritten or truncated tail)",
    )
    verify.add_argument(
        "--archive",
        metavar="FILE",
        nargs="+",
        default=(),
        help="archive files written by `audit archive`: checked with the live log as one chain",
    )
    verify.set_defaults(handler=_audit_verify)
    listing = audit_sub.add_parser("list", help="the newest audit records that match, as a table")
    _filters(listing)
    listing.add_argument("--limit", type=int, default=50, help="how many of the newest matches (0: all; default 50)")
    listing.add_argument("--json", action="store_true", help="a JSON array instead of the table")
    listing.set_defaults(handler=_audit_list)
    exporter = audit_sub.add_parser("export", help="every audit record that matches, as JSON lines")
    _filters(exporter)
    exporter.add_argument("--out", metavar="FILE", default="-", help="file to write (default: standard output)")
    exporter.set_defaults(handler=_audit_export)
    archive = audit_sub.add_parser("archive", help="move audit records older than a date into a compressed file")
    archive.add_argument("--before", required=True, metavar="DATE", help="ISO date (UTC midnight) or epoch seconds")
    archive.add_argument("--to", required=True, metavar="FOLDER", help="where the archive file is written")
    archive.set_defaults(handler=_audit_archive)

    store = sub.add_parser("store", help="store tools: migrate, export, import, backup")
    store_sub = store.add_subparsers(dest="store_command", metavar="ACTION")
    store_sub.required = True
    store_sub.add_parser("migrate", help="apply PostgreSQL schema migrations (no-op when current)").set_defaults(
        handler=_store_migrate
    )
    export = store_sub.add_parser("export", help="write every record and the audit chain as JSON lines")
    export.add_argument("--out", metavar="FILE", default="-", help="file to write (default: standard output)")
    export.set_defaults(handler=_store_export)
    importer = store_sub.add_parser("import", help="read an export into an empty store of any backend")
    importer.add_argument("file", metavar="FILE", help="an export written by `store export` ('-' for stdin)")
    importer.set_defaults(handler=_store_import)
    backup = store_sub.add_parser("backup", help="copy the SQLite store to PATH while the broker runs")
    backup.add_argument("path", metavar="PATH")
    backup.set_defaults(handler=_store_backup)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--holder", metavar="ID", help="the person the record is about (sub or identity id)")
    parser.add_argument("--actor", metavar="ID", help="the one who acted (a DAC member, an administrator)")
    parser.add_argument("--dataset", metavar="ID")
    parser.add_argument(
        "--event",
        metavar="NAME",
        action="append",
        default=[],
        help="an event name (grants.revoke) or a prefix ending in a dot (gateway.); repeatable",
    )
    parser.add_argument(
        "--since", metavar="WHEN", help="ISO date or time (UTC), epoch seconds, or an age: 90m, 24h, 7d"
    )
    parser.add_argument("--until", metavar="WHEN", help="as --since; records before it")


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _audit_filter(ctx: Context) -> AuditFilter:
    args = ctx.args
    now = int(time.time())

    def moment(option: str, text: str | None) -> int | None:
        if text is None:
            return None
        value = text.strip()
        unit = _AGE_UNITS.get(value[-1:]) if len(value) > 1 else None
        if unit is not None and value[:-1].isdigit():
            return now - int(value[:-1]) * unit
        return _when(value, option)

    return AuditFilter(
        events=tuple(args.event),
        holder=args.holder,
        actor=args.actor,
        dataset=args.dataset,
        since=moment("--since", args.since),
        until=moment("--until", args.until),
    )


@contextmanager
def _existing_kernel(ctx: Context) -> Iterator[Kernel]:
    """The configured store for reading: a missing SQLite file is an error, never a new empty store."""
    settings = ctx.settings
    path = ctx.missing_store()
    if path is not None:
        where = settings.source if settings.source != DEFAULTS else "the embedded defaults (no settings file)"
        raise CommandError(f"no SQLite store at {path} (settings: {where}; check store.path / data_dir)", 1)
    with ctx.kernel() as kernel:
        yield kernel


def _detail(event: dict[str, Any]) -> str:
    name = str(event.get("event", ""))
    if name.startswith("gateway."):
        parts = [event.get("outcome"), event.get("reason"), event.get("object_path")]
        if event.get("bytes_sent") is not None:
            parts.append(f"{event['bytes_sent']} bytes")
        return " ".join(str(p) for p in parts if p)
    for key in ("reason", "role", "connector", "action"):
        if event.get(key):
            return f"{key}: {event[key]}"
    return ""


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)


def _audit_list(ctx: Context) -> int:
    if ctx.args.limit < 0:
        raise CommandError("--limit: expected 0 (all) or a positive number", 2)
    chosen = _audit_filter(ctx)
    with _existing_kernel(ctx) as kernel:
        newest: deque[AuditRecord] = deque(maxlen=ctx.args.limit or None)
        newest.extend(chosen.select(kernel.audit_records()))
    if ctx.args.json:
        ctx.out_json([record_json(r) for r in newest])
        return 0
    rows = [("SEQ", "TIME (UTC)", "EVENT", "ACTOR", "HOLDER", "DATASET", "DETAIL")]
    for record in newest:
        event = record.event
        holder = next((event[f] for f in HOLDER_FIELDS if event.get(f) is not None), None)
        rows.append(
            (
                str(record.seq),
                datetime.fromtimestamp(record.at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                _cell(event.get("event")),
                _cell(event.get("actor")),
                _cell(holder),
                _cell(event.get("dataset")),
                _cell(_detail(event)),
            )
        )
    widths = [min(max(len(row[i]) for row in rows), 40) for i in range(len(rows[0]) - 1)]
    for row in rows:
        ctx.out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    if len(rows) == 1:
        ctx.out("(no audit record matches)")
    return 0


def _audit_export(ctx: Context) -> int:
    chosen = _audit_filter(ctx)
    with _existing_kernel(ctx) as kernel:
        out = sys.stdout if ctx.args.out == "-" else None
        try:
            target = out or _private_text_file(ctx.args.out)
        except OSError as exc:
            raise CommandError(f"cannot write {ctx.args.out}: {exc.strerror}", 1) from None
        count = 0
        try:
            for record in chosen.select(kernel.audit_records()):
                target.write(json.dumps(record_json(record), separators=(",", ":")) + "\n")
                count += 1
        finally:
            if out is None:
                target.close()
    if ctx.args.out != "-":
        ctx.out(f"wrote {count} audit record(s) to {ctx.args.out}")
    return 0


@dataclass
class _Tally:
    """Counts records as verify_chain streams through them (the log is never held whole)."""

    count: int = 0
    last: AuditRecord | None = None

    def through(self, records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        for record in records:
            self.count += 1
            self.last = record
            yield record


def _audit_verify(ctx: Context) -> int:
    anchor = None
    if ctx.args.anchor is not None:
        try:
            anchor = parse_anchor(ctx.args.anchor)
        except ValueError as exc:
            raise CommandError(f"--anchor: {exc}", 2) from None

    tally = _Tally()
    with _existing_kernel(ctx) as kernel:
        live = tally.through(kernel.audit_records())
        archived = ctx.args.archive
        problems = verify_archive(archived, live) if archived else verify_chain(live, anchor=anchor)

    if problems:
        for p in problems:
            ctx.out(f"seq {p.seq}: {p.problem}: {p.detail}" if p.detail else f"seq {p.seq}: {p.problem}")
        ctx.out(f"FAILED: {len(problems)} problem(s) in {tally.count} audit record(s)")
        return 1
    if tally.last is None:
        ctx.out("OK: 0 audit records")
    else:
        ctx.out(
            f"OK: {tally.count} audit record(s), chain intact; head {tally.last.seq}:{tally.last.hash} "
            "(keep it elsewhere and pass it as --anchor to detect a rewritten tail)"
        )
    return 0


def _when(text: str, option: str = "--before") -> int:
    """Epoch seconds from an ISO date (UTC midnight), an ISO datetime or epoch seconds."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        if len(value) == 10:
            return int(datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC).timestamp())
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"{option}: expected an ISO date or epoch seconds, got {text!r}", 2) from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def _audit_archive(ctx: Context) -> int:
    before = _when(ctx.args.before)
    settings = ctx.settings
    try:
        kernel = open_kernel(settings.store, settings.sqlite_path)
        try:
            written = archive(kernel, before, ctx.args.to)
        finally:
            kernel.close()
    except (StoreError, TransferError, OSError) as exc:
        raise CommandError(f"archive failed: {exc}", 1) from None
    ctx.out(f"archived to {written}" if written is not None else "nothing older than that to archive")
    return 0


def _store_migrate(ctx: Context) -> int:
    settings = ctx.settings
    if settings.store.backend != "postgres":
        ctx.out(f"the {settings.store.backend} store needs no migration step (its schema is created on open)")
        return 0
    from broker.store.postgres_kernel import migrate  # optional backend: loads psycopg only here

    try:
        applied = migrate(settings.store.url.get_secret_value(), settings.store.postgres_schema)
    except StoreError as exc:
        raise CommandError(f"migration failed: {exc}", 1) from None
    ctx.out(f"applied migrations {applied}" if applied else "schema is current: nothing to apply")
    return 0


def _private_text_file(path: str) -> TextIO:
    """``path`` opened for writing text, readable by its owner only (mode 0600, also when it existed).

    Exports hold sessions, token families, sealed keys and people's identifiers: a secret.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return open(fd, "w", encoding="utf-8")


def _store_export(ctx: Context) -> int:
    settings = ctx.settings
    try:
        kernel = open_kernel(settings.store, settings.sqlite_path)
        try:
            if ctx.args.out == "-":
                summary = export(kernel, sys.stdout)
            else:
                with _private_text_file(ctx.args.out) as out:
                    summary = export(kernel, out)
        finally:
            kernel.close()
    except (StoreError, OSError) as exc:
        raise CommandError(f"export failed: {exc}", 1) from None
    print(f"exported {summary.records} record(s) and {summary.audit} audit record(s)", file=sys.stderr)
    return 0


def _store_import(ctx: Context) -> int:
    settings = ctx.settings
    try:
        kernel = open_kernel(settings.store, settings.sqlite_path)
        try:
            if ctx.args.file == "-":
                summary = import_(kernel, sys.stdin)
            else:
                with open(ctx.args.file, encoding="utf-8") as lines:
                    summary = import_(kernel, lines)
        finally:
            kernel.close()
    except (StoreError, TransferError, OSError) as exc:
        raise CommandError(f"import failed: {exc}", 1) from None
    ctx.out(
        f"imported {summary.records} record(s) and {summary.audit} audit record(s)"
        f" ({summary.skipped_expired} expired meanwhile, skipped)"
    )
    return 0


def _store_backup(ctx: Context) -> int:
    settings = ctx.settings
    if settings.store.backend != "sqlite":
        raise CommandError(
            f"store backup copies the SQLite file; back up {settings.store.backend} with its own tools "
            "(see docs/operations.md)",
            2,
        )
    source = Path(settings.store.path) if settings.store.path else settings.sqlite_path
    if not source.is_file():
        raise CommandError(f"no SQLite store at {source}", 1)
    target = Path(ctx.args.path)
    try:
        # Made empty and private first (an empty file is an empty database to SQLite), so the copy
        # is never readable by others, not even while it is being written; O_EXCL: never overwrite.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise CommandError(f"{target} exists; choose a new path", 2) from None
    except OSError as exc:
        raise CommandError(f"cannot create {target}: {exc.strerror}", 1) from None
    try:
        with closing(sqlite3.connect(str(source))) as src, closing(sqlite3.connect(str(target))) as dst:
            src.backup(dst)  # SQLite's online backup: consistent while writers go on
    except (sqlite3.Error, OSError) as exc:
        target.unlink(missing_ok=True)  # a partial copy must not pass for a backup
        raise CommandError(f"backup failed: {exc}", 1) from None
    ctx.out(f"backed up {source} to {target}")
    return 0
