"""Revocations reach every process sharing the store: a watcher on the audit log (GA-14, DESIGN rule 8).

A revocation and its audit record (``grants.revoke`` or ``registered.revoke``) are written by
one store transaction, so every acknowledged revocation is in the log and nothing in the log
was rolled back. A new registered-access decision that replaces a live one names it in
``supersedes``: that record's visas stop verifying too. Each process runs one
:class:`RevocationWatcher`, which reads the audit records appended since it last looked, once
per ``interval`` (1 s), and calls ``on_revoke(record_id)`` for each such record, so caches of
that process (the verified-token cache, passport caches) drop what relies on the decision
within about one interval. The process that made the change also calls its hooks at once (the
DAC services' ``on_revoke``), and again when a revocation is retried.

It starts at the log's current end (history is not replayed; a cache built after a revocation
never held the revoked visa, since minting reads the store). A failing read (store down) is
logged and retried at the next tick; a failing callback is logged and does not stop the
watcher. Visas already handed out stay verifiable until their short ``exp`` by parties that do
not share our store; that is the documented bound (SPEC: keep visa exp short).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from broker.store.base import AuditRecord

log = logging.getLogger("broker.visas")

REVOCATION_EVENTS = frozenset({"grants.revoke", "registered.revoke"})
REPLACING_EVENTS = frozenset({"registered.accept", "registered.status", "registered.vouch"})


class AuditLog(Protocol):
    """The part of a store the watcher reads (a kernel, or the first release's typed store)."""

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]: ...

    def audit_last_seq(self) -> int: ...


def revoked_records(event: dict[str, Any]) -> list[str]:
    """The record ids an audit event takes out of force: a revocation's ``grant``, a replacement's ``supersedes``."""
    name = event.get("event")
    if name in REVOCATION_EVENTS and isinstance(event.get("grant"), str):
        return [event["grant"]]
    if name in REPLACING_EVENTS and isinstance(event.get("supersedes"), str):
        return [event["supersedes"]]
    return []


def log_end(store: AuditLog) -> int:
    """The seq of the last audit record (0 for an empty log), without reading the log."""
    return store.audit_last_seq()


class RevocationWatcher:
    """Polls the audit log and reports each revocation by record id (see the module docstring)."""

    def __init__(
        self, store: AuditLog, on_revoke: Callable[[str], object], interval: float = 1.0, start_after: int | None = None
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be greater than 0")
        self.store = store
        self.on_revoke = on_revoke
        self.interval = interval
        self._seq = start_after
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> int:
        """Read what was appended since the last poll; the number of revocations reported."""
        if self._seq is None:
            self._seq = log_end(self.store)
            return 0
        reported = 0
        for record in self.store.audit_records(self._seq):
            self._seq = record.seq
            for record_id in revoked_records(record.event):
                try:
                    self.on_revoke(record_id)
                except Exception:
                    log.exception("revocation callback failed for audit record %s", record.seq)
                reported += 1
        return reported

    def start(self) -> RevocationWatcher:
        if self._thread is not None:
            return self
        self.poll()  # fix the starting point before returning
        self._thread = threading.Thread(target=self._run, name="revocation-watcher", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Read the log now rather than at the next tick (a store that notifies of changes calls this)."""
        self._wakeup.set()

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval + 1)
            self._thread = None

    def _run(self) -> None:
        while True:
            self._wakeup.wait(self.interval)
            self._wakeup.clear()
            if self._stop.is_set():
                return
            try:
                self.poll()
            except Exception as exc:  # store down: try again next tick
                log.warning("revocation watcher could not read the audit log (%s)", exc.__class__.__name__)
