"""Reading a stored Crypt4GH file's header through a random-access reader, bounded.

Why our own parser and not ``crypt4gh.header.parse``: the stored object may come from an HTTP
store or be damaged, and that parser trusts the file (any packet count up to 2**32, any packet
length, reads a stream). Here every number is checked before it is used: magic ``crypt4gh``,
version 1, a packet count of at least 1 and at most ``max_packets``, each packet length (which
counts its own 4 bytes) between 8 and ``max_packet_bytes``, the whole header at most
``max_header_bytes`` and within the object. The header is read in a few large reads (a read-ahead),
not one read per field, so an HTTP store answers it in one or two round trips.

Layout (Crypt4GH spec, section 3): ``"crypt4gh" || version (4, LE) || packet count (4, LE) ||
packets``, each packet ``length (4, LE, including itself) || encryption method (4, LE) || ...``;
the encrypted body follows the header directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from broker.gateway.c4gh.errors import StoredHeaderError, StoredReadError

MAGIC = b"crypt4gh"
VERSION = 1
PREFIX_BYTES = 16  # magic, version, packet count
MIN_PACKET_BYTES = 8  # its length and its encryption method


@runtime_checkable
class RandomReader(Protocol):
    """Random access to a stored object: its ``size`` and ``read(offset, length)``.

    ``read`` returns at most ``length`` bytes starting at ``offset``; fewer only at the end of the
    object (callers loop on short reads). It may raise ``OSError``; other exceptions pass through.
    """

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


class BytesReader:
    """A :class:`RandomReader` over bytes in memory (tests, cached headers, small objects)."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


class FileReader:
    """A :class:`RandomReader` over a file descriptor with ``os.pread`` (no shared file position).

    The size is taken once, when the reader is made: a file that shrinks later ends reads early,
    which :func:`read_exact` reports as :class:`StoredReadError`.
    """

    def __init__(self, fd: int, *, owns_fd: bool = False) -> None:
        self._fd = fd
        self._owns_fd = owns_fd
        self._size = os.fstat(fd).st_size

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> FileReader:
        """Open ``path`` read-only; close the reader (or use it in ``with``) to close the file."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            return cls(fd, owns_fd=True)
        except BaseException:
            os.close(fd)
            raise

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        if self._owns_fd and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_some(reader: RandomReader, offset: int, length: int) -> bytes:
    """One read of 1 to ``length`` bytes at ``offset``; :class:`StoredReadError` if none come or it fails."""
    try:
        chunk = reader.read(offset, length)
    except OSError as exc:
        raise StoredReadError("c4gh_stored_read_failed", f"Reading the stored object failed ({exc}).") from None
    if len(chunk) > length:
        raise StoredReadError("c4gh_stored_read_failed", "The stored object's reader returned more than asked.")
    if not chunk:
        raise StoredReadError(
            "c4gh_stored_truncated", f"The stored object ended at byte {offset}, earlier than its size."
        )
    return bytes(chunk)


def read_exact(reader: RandomReader, offset: int, length: int) -> bytes:
    """Exactly ``length`` bytes at ``offset``, looping on short reads; :class:`StoredReadError` if it ends early."""
    parts: list[bytes] = []
    got = 0
    while got < length:
        chunk = read_some(reader, offset + got, length - got)
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Bounds on a stored header. Real headers are one to a few packets of about 100 bytes."""

    max_packets: int = 64
    max_packet_bytes: int = 64 * 1024
    max_header_bytes: int = 1024 * 1024
    read_ahead: int = 4096  # first read, and the least any further read asks for


DEFAULT_LIMITS = HeaderLimits()


@dataclass(frozen=True, slots=True)
class ParsedHeader:
    """A header's exact bytes and its packets (each without its 4-byte length)."""

    raw: bytes
    packets: tuple[bytes, ...]

    @property
    def length(self) -> int:
        return len(self.raw)


@dataclass(frozen=True, slots=True)
class StoredHeader:
    """The header of a stored object and where its encrypted body lies in that object."""

    header: ParsedHeader
    stored_size: int

    @property
    def body_offset(self) -> int:
        return self.header.length

    @property
    def body_length(self) -> int:
        return self.stored_size - self.header.length


def _bad(code: str, message: str) -> StoredHeaderError:
    return StoredHeaderError(code, message)


def _walk(fetch: _Fetch, limit_total: int, limits: HeaderLimits) -> ParsedHeader:
    """Parse a header from ``fetch`` (which extends its buffer on demand) up to ``limit_total`` bytes."""
    available = min(limit_total, limits.max_header_bytes)
    if limit_total < PREFIX_BYTES:
        raise _bad("c4gh_truncated_header", f"The stored object is {limit_total} bytes, shorter than a header.")
    buf = fetch.ensure(PREFIX_BYTES)
    if bytes(buf[:8]) != MAGIC:
        raise _bad("c4gh_not_crypt4gh", "The stored object is not a Crypt4GH file (no crypt4gh magic).")
    version = int.from_bytes(buf[8:12], "little")
    if version != VERSION:
        raise _bad("c4gh_unsupported_version", f"The stored Crypt4GH file has version {version}; only 1 is served.")
    count = int.from_bytes(buf[12:16], "little")
    if count < 1 or count > limits.max_packets:
        raise _bad(
            "c4gh_bad_packet_count",
            f"The stored Crypt4GH header declares {count} packets; between 1 and {limits.max_packets} are accepted.",
        )
    pos = PREFIX_BYTES
    packets: list[bytes] = []
    for index in range(count):
        if pos + 4 > available:
            raise _too_long_or_truncated(pos + 4, limit_total, limits)
        buf = fetch.ensure(pos + 4)
        length = int.from_bytes(buf[pos : pos + 4], "little")
        if length < MIN_PACKET_BYTES or length > limits.max_packet_bytes:
            raise _bad(
                "c4gh_bad_packet_length",
                f"Packet {index} of the stored Crypt4GH header declares {length} bytes; "
                f"between {MIN_PACKET_BYTES} and {limits.max_packet_bytes} are accepted.",
            )
        end = pos + length
        if end > available:
            raise _too_long_or_truncated(end, limit_total, limits)
        buf = fetch.ensure(end)
        packets.append(bytes(buf[pos + 4 : end]))
        pos = end
    return ParsedHeader(raw=bytes(fetch.ensure(pos)[:pos]), packets=tuple(packets))


def _too_long_or_truncated(needed: int, limit_total: int, limits: HeaderLimits) -> StoredHeaderError:
    if needed > limits.max_header_bytes:
        return _bad(
            "c4gh_header_too_large", f"The stored Crypt4GH header is larger than {limits.max_header_bytes} bytes."
        )
    return _bad("c4gh_truncated_header", f"The stored Crypt4GH header is cut short at {limit_total} bytes.")


class _Fetch(Protocol):
    def ensure(self, n: int) -> bytes | bytearray: ...


class _BytesFetch:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def ensure(self, n: int) -> bytes:
        return self._data


class _ReaderFetch:
    def __init__(self, reader: RandomReader, size: int, read_ahead: int) -> None:
        self._reader = reader
        self._size = size
        self._read_ahead = read_ahead
        self._buf = bytearray()

    def ensure(self, n: int) -> bytearray:
        # The read-ahead is a wish, not a need: a short read is fine once ``n`` bytes are in.
        while len(self._buf) < n:
            have = len(self._buf)
            want = min(self._size - have, max(n - have, self._read_ahead))
            self._buf += read_some(self._reader, have, want)
        return self._buf


def parse_header(data: bytes, limits: HeaderLimits = DEFAULT_LIMITS) -> ParsedHeader:
    """Parse the header at the start of ``data`` (bytes after the header are ignored).

    Raises :class:`StoredHeaderError` (codes ``c4gh_not_crypt4gh``, ``c4gh_unsupported_version``,
    ``c4gh_bad_packet_count``, ``c4gh_bad_packet_length``, ``c4gh_header_too_large``,
    ``c4gh_truncated_header``).
    """
    data = bytes(data)
    return _walk(_BytesFetch(data), len(data), limits)


def read_header(reader: RandomReader, limits: HeaderLimits = DEFAULT_LIMITS) -> StoredHeader:
    """Read and parse the header of the object behind ``reader``; the body is what follows it.

    Raises :class:`StoredHeaderError` as :func:`parse_header`, :class:`StoredReadError` when reading fails.
    """
    size = reader.size
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise StoredReadError("c4gh_stored_read_failed", "The stored object's reader reports no valid size.")
    header = _walk(_ReaderFetch(reader, size, max(1, limits.read_ahead)), size, limits)
    return StoredHeader(header=header, stored_size=size)
