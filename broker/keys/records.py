"""The key ring's record: one signing key, its schedule and its (sealed) private part.

Kept in 0600 files (:class:`broker.keys.storage.FileKeyStorage`) or as kernel records of kind
``signing-key`` (:data:`SIGNING_KEYS`, :class:`broker.keys.storage.StoreKeyStorage`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.store.records import RecordType


@dataclass(frozen=True)
class KeyRecord:
    """A signing key of our key ring. ``private`` is ciphertext or a PEM kept only in 0600 files."""

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    private: bytes
    created_at: int
    not_before: int  # signs from this time (published from created_at)
    retired_at: int | None = None  # stopped signing at this time
    remove_after: int | None = None  # unpublished after this time


SIGNING_KEYS = RecordType("signing-key", KeyRecord, key=lambda k: k.kid)
