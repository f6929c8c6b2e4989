"""HTTP byte ranges (RFC 9110 section 14): parsing, resolution, If-Range, multipart layout.

Written by hand because the policy is the point (THREAT-MODEL PX-09, PX-10): Werkzeug's
parser accepts any number of ranges and neither caps nor coalesces them. The documented
policy of this gateway:

- a ``Range`` whose unit is not ``bytes`` is ignored (200, RFC 9110 14.2 "MUST ignore");
- a ``bytes`` range set that is syntactically invalid (``5-3``, letters, no ranges), longer
  than ``max_range_header_bytes`` or with more than ``max_ranges`` ranges is **refused**
  with 416 rather than ignored: genomic files are tens of gigabytes, and answering a typo
  with the whole file is worse for the client than a clear error;
- ranges are clipped to the representation, unsatisfiable ones dropped (``bytes=-0``,
  ``first >= size``), and if none is left the answer is 416 with ``Content-Range: bytes */size``;
- overlapping or adjacent ranges are coalesced (RFC 9110 14.2 permits it), so the bytes
  sent never exceed the representation's size plus part headers whatever the request;
  remaining parts keep the order of the request (14.6);
- one resulting range gives a plain 206; several give ``multipart/byteranges`` with a
  random boundary;
- ``If-Range`` (13.1.5): a strong entity-tag must equal the current ETag, a date must equal
  Last-Modified exactly; anything else (weak tag, unparsable) means "send the whole thing".
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime

from broker.errors import BrokerError

_OWS = " \t"
_MAX_DIGITS = 19  # 10**19 bytes is past any file; longer numbers are refused as invalid


class RangeNotSatisfiable(BrokerError):
    """The Range header is refused: 416 with ``Content-Range: bytes */<size>``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, status=416, code=code)


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """One requested range before the size is known: ``first-last``, ``first-`` or ``-suffix``."""

    first: int | None
    last: int | None

    def __str__(self) -> str:
        if self.first is None:
            return f"-{self.last}"
        return f"{self.first}-" if self.last is None else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A satisfiable range of a representation of known size; ``end`` is inclusive."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(value: str | None, max_ranges: int, max_bytes: int) -> list[RangeSpec] | None:
    """Parse a ``Range`` header value. None means "ignore it" (absent or not the bytes unit).

    Raises :class:`RangeNotSatisfiable` for a bytes range set we refuse (see module doc).
    """
    if value is None:
        return None
    text = value.strip(_OWS)
    unit, eq, ranges = text.partition("=")
    if not eq or unit.strip(_OWS).lower() != "bytes" or unit != unit.strip(_OWS):
        return None  # another unit (or no unit at all): RFC 9110 says ignore it
    if len(value) > max_bytes:
        raise RangeNotSatisfiable("too_long", f"The Range header is longer than {max_bytes} bytes.")
    elements = ranges.split(",")
    if len(elements) > 2 * max_ranges:
        raise RangeNotSatisfiable("too_many_ranges", f"At most {max_ranges} ranges per request.")
    specs: list[RangeSpec] = []
    for element in elements:
        item = element.strip(_OWS)
        if not item:
            continue  # RFC 9110 5.6.1: empty list elements are allowed and ignored
        specs.append(_parse_spec(item))
        if len(specs) > max_ranges:
            raise RangeNotSatisfiable("too_many_ranges", f"At most {max_ranges} ranges per request.")
    if not specs:
        raise RangeNotSatisfiable("invalid_range", "The Range header lists no range.")
    return specs


def _parse_spec(item: str) -> RangeSpec:
    first, dash, last = item.partition("-")
    if not dash:
        raise RangeNotSatisfiable("invalid_range", "A range must contain '-'.")
    if first == "":
        return RangeSpec(None, _digits(last))
    start = _digits(first)
    if last == "":
        return RangeSpec(start, None)
    end = _digits(last)
    if end < start:
        raise RangeNotSatisfiable("invalid_range", "A range ends before it starts.")
    return RangeSpec(start, end)


def _digits(text: str) -> int:
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        raise RangeNotSatisfiable("invalid_range", "A range position is not a decimal number.")
    return int(text)


def resolve(specs: list[RangeSpec], size: int) -> list[ByteRange]:
    """Clip, drop unsatisfiable, coalesce overlapping/adjacent ranges; keep request order.

    Raises :class:`RangeNotSatisfiable` when no range is satisfiable (RFC 9110 14.1.1).
    """
    wanted: list[tuple[int, ByteRange]] = []
    for index, spec in enumerate(specs):
        if spec.first is None:
            assert spec.last is not None
            if spec.last == 0 or size == 0:
                continue
            wanted.append((index, ByteRange(max(0, size - spec.last), size - 1)))
        elif spec.first < size:
            end = size - 1 if spec.last is None else min(spec.last, size - 1)
            wanted.append((index, ByteRange(spec.first, end)))
    if not wanted:
        raise RangeNotSatisfiable("unsatisfiable", "None of the requested ranges is inside the representation.")
    merged: list[tuple[int, ByteRange]] = []
    for index, rng in sorted(wanted, key=lambda pair: (pair[1].start, pair[0])):
        if merged and rng.start <= merged[-1][1].end + 1:
            first_index, last = merged[-1]
            merged[-1] = (min(first_index, index), ByteRange(last.start, max(last.end, rng.end)))
        else:
            merged.append((index, rng))
    return [rng for _, rng in sorted(merged, key=lambda pair: pair[0])]


def canonical_header(specs: list[RangeSpec]) -> str:
    """The range set re-serialised from parsed numbers (what we forward upstream)."""
    return "bytes=" + ",".join(str(spec) for spec in specs)


def if_range_holds(value: str | None, etag: str | None, last_modified: float | None) -> bool:
    """RFC 9110 13.1.5: may the Range be honoured? True when If-Range is absent or matches."""
    if value is None:
        return True
    text = value.strip(_OWS)
    if text.startswith('"'):
        return etag is not None and not etag.startswith("W/") and text == etag and len(text) >= 2 and text.endswith('"')
    if text.startswith("W/"):
        return False  # a weak validator never allows a partial response
    if last_modified is None:
        return False
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year past datetime's range overflows
        return False
    if when is None or when.tzinfo is None:
        return False
    return int(when.timestamp()) == int(last_modified)


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


def http_date(timestamp: float) -> str:
    """IMF-fixdate (RFC 9110 5.6.7) for Last-Modified."""
    return _http_date(int(timestamp))


@dataclass(frozen=True)
class MultipartLayout:
    """A ``multipart/byteranges`` body planned up front, so Content-Length is exact."""

    boundary: str
    parts: tuple[tuple[bytes, ByteRange], ...]  # part header bytes, then that range's bytes
    tail: bytes
    content_length: int

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"


def multipart_layout(ranges: list[ByteRange], size: int, part_type: str) -> MultipartLayout:
    """Plan the body: each part has Content-Type and Content-Range (RFC 9110 14.6)."""
    boundary = secrets.token_hex(16)
    parts: list[tuple[bytes, ByteRange]] = []
    total = 0
    for i, rng in enumerate(ranges):
        head = (
            ("" if i == 0 else "\r\n") + f"--{boundary}\r\nContent-Type: {part_type}\r\n"
            f"Content-Range: {rng.content_range(size)}\r\n\r\n"
        ).encode("ascii")
        parts.append((head, rng))
        total += len(head) + rng.length
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return MultipartLayout(boundary, tuple(parts), tail, total + len(tail))
