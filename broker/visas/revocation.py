"""Revocations reach every process sharing the store: a watcher on the audit log (GA-14, DESIGN rule 8).

A revocation is a write to the shared store followed by an audit record (``grants.revoke`` or
``registered.revoke``). Each process runs one :class:`RevocationWatcher`, which reads the audit
records appended since it last looked, once per ``interval`` (1 s), and calls
``on_revoke(record_id)`` for each revocation, so caches of that process (the verified-token
cache, passport caches) drop what relies on the revoked decision within about one interval.
The process that revoked also calls its hook at once (``init_app(on_revoke=...)``).

It starts at the log's current end (history is not replayed; a cache built after a revocation
never held the revoked visa, since minting reads the store). A failing read (store down) is
logged and retried at the next tick; a failing callback is logged and does not stop the
watcher. Visas already handed out stay verifiable until their short ``exp`` by parties that do
not share our store; that is the documented bound (SPEC: keep visa exp short).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from broker.store.base import Store

log = logging.getLogger("broker.visas")

REVOCATION_EVENTS = frozenset({"grants.revoke", "registered.revoke"})


def log_end(store: Store) -> int:
    """The seq of the last audit record (0 for an empty log), without reading the log."""
    return store.audit_last_seq()


class RevocationWatcher:
    """Polls the audit log and reports each revocation by record id (see the module docstring)."""

    def __init__(
        self, store: Store, on_revoke: Callable[[str], None], interval: float = 1.0, start_after: int | None = None
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be greater than 0")
        self.store = store
        self.on_revoke = on_revoke
        self.interval = interval
        self._seq = start_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> int:
        """Read what was appended since the last poll; the number of revocations reported."""
        if self._seq is None:
            self._seq = log_end(self.store)
            return 0
        reported = 0
        for record in self.store.audit_records(self._seq):
            self._seq = record.seq
            event = record.event
            if event.get("event") in REVOCATION_EVENTS and isinstance(event.get("grant"), str):
                try:
                    self.on_revoke(event["grant"])
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

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval + 1)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # store down: try again next tick
                log.warning("revocation watcher could not read the audit log (%s)", exc.__class__.__name__)
