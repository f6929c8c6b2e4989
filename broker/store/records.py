"""Typed records on the store kernel: one :class:`Records` per record type an area keeps.

An area declares, for each of its record dataclasses, the kind it lives under and how its key,
index terms and expiry derive from the record; :class:`Records` then reads and writes typed
values through the kernel, inside or outside a transaction::

    GRANTS = RecordType("grant", Grant, key=lambda g: g.id,
                        terms=lambda g: (f"identity:{g.identity_id}", f"dataset:{g.dataset}"))
    grants = Records(kernel, GRANTS)
    grants.put(grant); grants.find(f"identity:{who}")
    kernel.transact(lambda tx: grants.in_tx(tx).put(renewed))

The codec (:func:`to_json` / :func:`from_json`) is the same for every backend, so a record
written by one reads back identically through another. Unknown fields (written by a newer
version) are ignored; anything else that does not fit raises StoreError, so a corrupt record
never comes back half-read.
"""

from __future__ import annotations

import base64
import dataclasses
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar, cast

from broker.store.base import StoreError
from broker.store.kernel import Kernel, Tx, Write

R = TypeVar("R")


@cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def to_json(record: Any) -> dict[str, Any]:
    """A record dataclass as a JSON object; ``bytes`` fields as base64 text, tuples as lists."""
    data: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        elif isinstance(value, tuple):
            value = list(value)
        data[f.name] = value
    return data


def from_json(cls: type[R], data: dict[str, Any]) -> R:
    """The record of type ``cls`` from :func:`to_json` output; StoreError when it does not fit."""
    try:
        hints = _field_types(cast(type, cls))
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


@dataclass(frozen=True)
class RecordType(Generic[R]):
    """How one record dataclass lives on the kernel: its kind, key, terms and expiry."""

    kind: str
    cls: type[R]
    key: Callable[[R], str]
    terms: Callable[[R], Sequence[str]] = lambda record: ()
    expires: Callable[[R], int | None] = lambda record: None

    def write(self, record: R) -> Write:
        return Write(to_json(record), self.expires(record), tuple(self.terms(record)))


class TxRecords(Generic[R]):
    """One record type inside a transaction (reads see the state before it; writes apply at commit)."""

    def __init__(self, tx: Tx, spec: RecordType[R]) -> None:
        self.tx = tx
        self.spec = spec

    def get(self, key: str) -> R | None:
        value = self.tx.get(self.spec.kind, key)
        return from_json(self.spec.cls, value) if value is not None else None

    def find(self, term: str) -> list[R]:
        return [from_json(self.spec.cls, item.value) for item in self.tx.find(self.spec.kind, term)]

    def put(self, record: R) -> None:
        write = self.spec.write(record)
        self.tx.put(self.spec.kind, self.spec.key(record), write.value, expires_at=write.expires_at, terms=write.terms)

    def delete(self, key: str) -> None:
        self.tx.delete(self.spec.kind, key)


class Records(Generic[R]):
    """One record type over a kernel: typed get, find, scan, put, add, take, delete and update."""

    def __init__(self, kernel: Kernel, spec: RecordType[R]) -> None:
        self.kernel = kernel
        self.spec = spec

    def in_tx(self, tx: Tx) -> TxRecords[R]:
        """This record type inside the transaction ``tx``."""
        return TxRecords(tx, self.spec)

    def get(self, key: str) -> R | None:
        value = self.kernel.get(self.spec.kind, key)
        return from_json(self.spec.cls, value) if value is not None else None

    def get_many(self, keys: Sequence[str]) -> list[R | None]:
        return [
            from_json(self.spec.cls, v) if v is not None else None for v in self.kernel.get_many(self.spec.kind, keys)
        ]

    def find(self, term: str) -> list[R]:
        return [from_json(self.spec.cls, item.value) for item in self.kernel.find(self.spec.kind, term)]

    def scan(self) -> Iterator[R]:
        for item in self.kernel.scan(self.spec.kind):
            yield from_json(self.spec.cls, item.value)

    def put(self, record: R) -> None:
        write = self.spec.write(record)
        self.kernel.put(
            self.spec.kind, self.spec.key(record), write.value, expires_at=write.expires_at, terms=write.terms
        )

    def add(self, record: R) -> bool:
        write = self.spec.write(record)
        return self.kernel.add(
            self.spec.kind, self.spec.key(record), write.value, expires_at=write.expires_at, terms=write.terms
        )

    def take(self, key: str) -> R | None:
        value = self.kernel.take(self.spec.kind, key)
        return from_json(self.spec.cls, value) if value is not None else None

    def delete(self, key: str) -> bool:
        return self.kernel.delete(self.spec.kind, key)

    def update(self, key: str, fn: Callable[[R | None], R | None]) -> R | None:
        """Read-modify-write of one record in one transaction; ``fn`` may run more than once."""

        def step(current: dict[str, Any] | None) -> Write | None:
            new = fn(from_json(self.spec.cls, current) if current is not None else None)
            return self.spec.write(new) if new is not None else None

        written = self.kernel.update(self.spec.kind, key, step)
        return from_json(self.spec.cls, written) if written is not None else None
