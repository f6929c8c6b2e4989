"""The broker's store: ``open_store`` picks the backend named in the settings.

Callers depend on the ``Store`` protocol and the record types re-exported here; the
backends (``sqlite.py``, ``redis_store.py``) are imported only when chosen, so importing
this package connects to nothing.

It also holds the one JSON codec both backends use for records, so a record written by
one backend reads back identically through the other (the contract suite proves it).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import typing
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from broker.store.base import (
    AuditProblem,
    AuditRecord,
    Client,
    Conflict,
    Consent,
    Grant,
    Health,
    Identity,
    IdentityLink,
    KeyRecord,
    RefreshToken,
    Store,
    StoreError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from broker.settings import Settings

__all__ = [
    "AuditProblem",
    "AuditRecord",
    "Client",
    "Conflict",
    "Consent",
    "Grant",
    "Health",
    "Identity",
    "IdentityLink",
    "KeyRecord",
    "RefreshToken",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "decode_record",
    "encode_record",
    "open_store",
]

R = TypeVar("R")


def open_store(settings: Settings) -> Store:
    """The store the settings name: SQLite at ``settings.sqlite_path`` or Redis at ``store.url``.

    SQLite creates its parent directories (mode 0700) and the file (mode 0600). Redis
    connects lazily: an unreachable server makes calls raise StoreUnavailable, not this.
    """
    backend = settings.store.backend
    if backend == "sqlite":
        from broker.store.sqlite import SQLiteStore

        return SQLiteStore(settings.sqlite_path, timeout=settings.store.timeout_seconds)
    if backend == "redis":
        from broker.store.redis_store import RedisStore

        return RedisStore(
            settings.store.url.get_secret_value(),
            namespace=settings.store.namespace,
            timeout=settings.store.timeout_seconds,
        )
    raise StoreError(f"unknown store backend {backend!r} (expected 'sqlite' or 'redis')")


# --------------------------------------------------------------------------- input checks shared by backends

MAX_NAME_CHARS = 4096
# A revoked refresh-token family stays marked at least this long, and until its last token
# would have expired: long enough to turn away a rotation that was in flight when it was revoked.
FAMILY_MARKER_MIN_SECONDS = 3600


def check_name(what: str, value: Any) -> None:
    """Keys and ids are non-empty strings of bounded length; ValueError names the field.

    Callers hand in values that came from tokens (``jti``, ``state``), so a number, an
    object or a megabyte string must be refused here, never stored or matched loosely.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {type(value).__name__}")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{what} is {len(value)} characters; the limit is {MAX_NAME_CHARS}")


def check_ttl(ttl: Any) -> None:
    """A lifetime is a whole number of seconds greater than 0."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError(f"ttl must be a whole number of seconds greater than 0, got {ttl!r}")


def family_marker_until(now: int, latest_expiry: int | None) -> int:
    """Until when a revoked refresh-token family stays marked revoked."""
    return max(int(latest_expiry or 0), now + FAMILY_MARKER_MIN_SECONDS)


# --------------------------------------------------------------------------- record codec


@cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def encode_record(record: Any) -> str:
    """A record dataclass as compact JSON; ``bytes`` fields as base64 text."""
    data: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        data[f.name] = value
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def decode_record(cls: type[R], text: str | bytes) -> R:
    """The record of type ``cls`` from ``encode_record`` output.

    Unknown fields (written by a newer version) are ignored; anything else that does not
    fit raises StoreError, so a corrupt record never comes back half-read.
    """
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        hints = _field_types(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                continue
            value = data[f.name]
            tp = hints[f.name]
            if tp is bytes:
                value = base64.b64decode(value, validate=True)
            elif typing.get_origin(tp) is tuple and isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
        return cls(**kwargs)
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"stored {cls.__name__} record is corrupt: {exc.__class__.__name__}") from exc
