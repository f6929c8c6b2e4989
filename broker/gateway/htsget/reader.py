"""Random access to a data file: the one thing the htsget core needs from a store.

The same planning code runs over a local file (:class:`FileReader`), bytes in memory
(:class:`BytesReader`) and, later, an HTTP store answering ``Range`` requests: anything with
``size`` and ``read(offset, length)`` satisfies :class:`RandomReader`. :func:`read_exact`
turns a short read into a typed :class:`~broker.gateway.htsget.errors.CorruptData`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from broker.gateway.htsget.errors import CorruptData


class RandomReader(Protocol):
    """Positional reads from an immutable object of known size."""

    @property
    def size(self) -> int:
        """Total size in bytes."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; fewer only at the end of the object."""
        ...


class BytesReader:
    """A :class:`RandomReader` over bytes in memory (tests, small objects)."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be non-negative")
        return self._data[offset : offset + length]


class FileReader:
    """A :class:`RandomReader` over a local file, read with ``os.pread`` (no shared file position).

    The size is taken once at opening: data files are immutable while served.
    """

    def __init__(self, path: str | Path) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._size = os.fstat(self._fd).st_size
        except OSError:
            os.close(self._fd)
            raise

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be non-negative")
        chunks: list[bytes] = []
        end = min(offset + length, self._size)
        while offset < end:
            chunk = os.pread(self._fd, end - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Release the file descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_exact(reader: RandomReader, offset: int, length: int, what: str) -> bytes:
    """Exactly ``length`` bytes at ``offset``, or :class:`CorruptData` naming ``what`` was cut short."""
    if offset < 0 or length < 0 or offset + length > reader.size:
        raise CorruptData("data_truncated", f"the data file ends before the {what} (offset {offset}, length {length})")
    data = reader.read(offset, length)
    if len(data) != length:
        raise CorruptData("data_truncated", f"the data file ends before the {what} (offset {offset}, length {length})")
    return data
