"""The served stream of a re-encrypted object: ``new header || stored body``, its ranges and streaming.

The web layer resolves an HTTP ``Range`` against :attr:`ServedLayout.served_size` (suffix and
open-ended forms included) and passes the resulting ``(start, end_inclusive)`` here. This module
maps it to parts: a slice of the new header (held in memory) and/or one contiguous byte range of the
stored object, which the web layer can stream itself, hand to nginx, or stream with
:func:`iter_parts` at flat memory. Written by hand: it is a few lines of arithmetic, and the property
tests compare it with slicing the concatenated stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from broker.gateway.c4gh.errors import ServedRangeError
from broker.gateway.c4gh.stored import RandomReader, read_exact

DEFAULT_CHUNK = 256 * 1024
MAX_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class HeaderPart:
    """``length`` bytes of the new header from ``offset``."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class StoredPart:
    """``length`` bytes of the stored object from ``offset`` (stored coordinates)."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        """The last byte, inclusive: what an upstream ``Range: bytes=offset-end`` asks for."""
        return self.offset + self.length - 1


Part = HeaderPart | StoredPart


@dataclass(frozen=True, slots=True)
class ServedLayout:
    """Where the served stream's bytes come from: the new header, then the stored body."""

    header_length: int
    body_offset: int
    body_length: int

    @property
    def served_size(self) -> int:
        return self.header_length + self.body_length

    def parts(self, start: int, end: int) -> list[Part]:
        """See :func:`served_parts`."""
        return served_parts(self, start, end)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def served_parts(layout: ServedLayout, start: int, end: int) -> list[Part]:
    """The parts that make up served bytes ``start..end`` (inclusive), in order; at most two.

    Raises :class:`ServedRangeError` (code ``range_not_satisfiable``) unless
    ``0 <= start <= end < served_size``.
    """
    size = layout.served_size
    if not (_is_int(start) and _is_int(end)) or not 0 <= start <= end < size:
        raise ServedRangeError(
            "range_not_satisfiable", f"The byte range {start}-{end} is outside the served object of {size} bytes."
        )
    parts: list[Part] = []
    h = layout.header_length
    if start < h:
        parts.append(HeaderPart(start, min(end, h - 1) - start + 1))
    if end >= h:
        first = max(start, h) - h
        parts.append(StoredPart(layout.body_offset + first, end - h - first + 1))
    return parts


def iter_parts(
    parts: Sequence[Part],
    header: bytes,
    reader: RandomReader,
    chunk_size: int = DEFAULT_CHUNK,
) -> Iterator[bytes]:
    """Yield the bytes of ``parts``: header slices from ``header``, stored ranges from ``reader``.

    Stored ranges are read ``chunk_size`` bytes at a time, so memory stays flat whatever the range.
    A stored object that ends early raises :class:`StoredReadError` mid-stream: the web layer must
    then abort the response (it has promised a Content-Length).
    """
    if not _is_int(chunk_size) or not 1 <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK}")
    for part in parts:
        if isinstance(part, HeaderPart) and (
            part.offset < 0 or part.length < 0 or part.offset + part.length > len(header)
        ):
            raise ValueError("a header part lies outside the header")
        if isinstance(part, StoredPart) and (part.offset < 0 or part.length < 0):
            raise ValueError("a stored part has a negative offset or length")
    return _generate(tuple(parts), header, reader, chunk_size)


def _generate(parts: tuple[Part, ...], header: bytes, reader: RandomReader, chunk_size: int) -> Iterator[bytes]:
    for part in parts:
        if isinstance(part, HeaderPart):
            if part.length:
                yield header[part.offset : part.offset + part.length]
            continue
        offset, left = part.offset, part.length
        while left > 0:
            data = read_exact(reader, offset, min(chunk_size, left))
            offset += len(data)
            left -= len(data)
            yield data


def iter_served(
    layout: ServedLayout,
    header: bytes,
    reader: RandomReader,
    start: int,
    end: int,
    chunk_size: int = DEFAULT_CHUNK,
) -> Iterator[bytes]:
    """Yield served bytes ``start..end`` (inclusive); the range is checked before anything is read."""
    return iter_parts(served_parts(layout, start, end), header, reader, chunk_size)
