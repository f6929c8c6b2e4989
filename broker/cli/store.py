"""Command-line commands of broker.store (registered by broker.cli).

``ga4gh-broker audit verify [--anchor SEQ:HASH]`` reads the whole audit log from the
configured store and checks its hash chain (``broker.store.audit.verify_chain``).
Exit 0 with ``OK`` and the record count when intact; exit 1 with one line per problem.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from broker.cli import CommandError, Context
from broker.store import open_store
from broker.store.audit import parse_anchor, verify_chain
from broker.store.base import AuditRecord, StoreError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``audit verify`` to the ga4gh-broker parser."""
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
    verify.set_defaults(handler=_audit_verify)


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

    settings = ctx.settings
    if settings.store.backend == "sqlite" and not settings.sqlite_path.is_file():
        raise CommandError(f"no SQLite store at {settings.sqlite_path} (check store.path / data_dir)", 1)
    tally = _Tally()
    try:
        store = open_store(settings)
        try:
            problems = verify_chain(tally.through(store.audit_records()), anchor=anchor)
        finally:
            store.close()
    except StoreError as exc:
        raise CommandError(f"cannot read the audit log: {exc}", 1) from None

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
