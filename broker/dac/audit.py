"""Audit entries of DAC actions: one structured event per change, and one per refusal.

Events are JSON objects appended to the store's hash-chained audit log (THREAT-MODEL UI-09:
structured, size capped by the store, one record per action with actor, DAC, dataset, and
reason). A change is written first and audited second; if the audit append fails the change
is undone (the caller's ``undo``) and the error raised, so no acknowledged change is missing
from the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from broker.store.base import Grant, Store

log = logging.getLogger("broker.dac")

MAX_REASON_CHARS = 1000


def grant_fields(grant: Grant) -> dict[str, Any]:
    """What an audit event says about a grant record."""
    return {
        "grant": grant.id,
        "identity": grant.identity_id,
        "dataset": grant.dataset,
        "dac": grant.dac,
        "start": grant.start,
        "end": grant.end,
    }


def record(
    store: Store, at: int, event: str, actor: str | None, undo: Callable[[], None] | None = None, **fields: Any
) -> None:
    """Append ``{"event": event, "actor": actor, **fields}``; on failure run ``undo`` and re-raise."""
    try:
        store.audit_append({"event": event, "actor": actor, **fields}, at)
    except Exception:
        if undo is not None:
            try:
                undo()
            except Exception:  # the original failure is the one to report; say the undo failed too
                log.error("undo after a failed audit append also failed (%s)", event)
        raise


def denied(store: Store, at: int, action: str, actor: str | None, **target: Any) -> None:
    """Audit a refused action (GA-12: "403, no state change, audit entry")."""
    store.audit_append({"event": "dac.denied", "action": action, "actor": actor, **target}, at)
