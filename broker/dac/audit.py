"""Audit events of DAC actions: one structured event per change, and one per refusal.

Events are JSON objects in the store's hash-chained audit log (THREAT-MODEL UI-09: structured,
size capped by the store, one record per action with actor, DAC, dataset and reason).

A change and its event(s) are written by ONE kernel transaction (``DacTx.audit``), so the log
holds exactly the changes that happened: never a change without its record, never a record of
a change that was rolled back. A refusal changes nothing, so its ``dac.denied`` event is a
standalone append (:func:`denied`).

Event names and fields (what the RevocationWatcher and the audit trail pages read):

- ``grants.create`` / ``grants.renew`` (``previous_end``) / ``grants.revoke``: :func:`grant_fields`
  plus ``reason``; an imported grant's ``grants.create`` carries ``via: "import"``, after one
  ``grants.import`` event (``count``, ``grants``) for the file;
- ``members.add`` (``dac``, ``identity``, ``role``, ``reason``; ``previous_role`` on a role change)
  and ``members.remove`` (``dac``, ``identity``, ``reason``);
- ``registered.accept`` / ``registered.status`` / ``registered.vouch`` / ``registered.revoke``:
  ``grant`` (the record id), ``identity``, ``dataset`` (the first release's label of the kind),
  ``dac``, ``start``, ``end``, ``type``, ``by``, ``reason``; a new record that replaces a live one
  also names it in ``supersedes``;
- ``dac.denied``: ``action`` and the target the refused actor named.
"""

from __future__ import annotations

from typing import Any

from broker.dac.records import Grant, RegisteredAccess
from broker.dac.repository import DacRepository

MAX_REASON_CHARS = 1000


def event(name: str, actor: str | None, **fields: Any) -> dict[str, Any]:
    """``{"event": name, "actor": actor, **fields}``."""
    return {"event": name, "actor": actor, **fields}


def grant_fields(grant: Grant) -> dict[str, Any]:
    """What an audit event says about a grant."""
    return {
        "grant": grant.id,
        "identity": grant.identity_id,
        "dataset": grant.dataset,
        "dac": grant.dac,
        "start": grant.start,
        "end": grant.end,
    }


def registered_fields(record: RegisteredAccess) -> dict[str, Any]:
    """What an audit event says about a registered-access record (``grant`` is its id, as the watcher reads it)."""
    return {
        "grant": record.id,
        "identity": record.identity_id,
        "dataset": record.label,
        "dac": record.dac,
        "start": record.start,
        "end": record.end,
        "type": record.visa_type,
        "by": record.by,
    }


def denied(repository: DacRepository, at: int, action: str, actor: str | None, **target: Any) -> None:
    """Audit a refused action (GA-12: "403, no state change, audit entry")."""
    repository.audit_append({"event": "dac.denied", "action": action, "actor": actor, **target}, at)
