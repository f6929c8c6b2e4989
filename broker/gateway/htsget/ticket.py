"""The htsget ticket JSON (htsget 1.3 "Response JSON fields") from planned pieces.

Byte ranges become URLs made by the caller's ``url_for_range`` (which signs them, picks the
store URL and the ``Range`` header); inline pieces become ``data:`` URIs with a base64 payload,
not percent-encoded, as the specification asks. Every URL carries ``class`` (all or none must),
and byte ranges longer than ``max_range_bytes`` are split, since the specification asks servers
to keep data blocks under about 1 GB so a failed transfer can be retried piecewise. ``md5`` is
omitted (it is optional and would need the whole payload).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from broker.gateway.htsget.plan import ByteRange, Format, Inline, Piece

UrlForRange = Callable[[int, int], tuple[str, Mapping[str, str] | None]]
"""``(start, end_inclusive) -> (url, headers or None)`` for a byte range of the data file."""

DATA_URI_PREFIX = "data:application/octet-stream;base64,"
DEFAULT_MAX_RANGE_BYTES = 1 << 30


def data_uri(data: bytes) -> str:
    """An RFC 2397 ``data:`` URI holding ``data`` as base64."""
    return DATA_URI_PREFIX + base64.b64encode(data).decode("ascii")


def build_ticket(
    fmt: Format,
    pieces: Sequence[Piece],
    url_for_range: UrlForRange,
    *,
    max_range_bytes: int = DEFAULT_MAX_RANGE_BYTES,
) -> dict[str, Any]:
    """``{"htsget": {"format": ..., "urls": [...]}}`` for the pieces, in order."""
    if max_range_bytes < 1:
        raise ValueError("max_range_bytes must be positive")
    urls: list[dict[str, Any]] = []
    for piece in pieces:
        if isinstance(piece, Inline):
            urls.append({"url": data_uri(piece.data), "class": piece.class_})
            continue
        if not isinstance(piece, ByteRange) or piece.end < piece.start:
            raise ValueError(f"not a piece: {piece!r}")
        start = piece.start
        while start <= piece.end:
            end = min(piece.end, start + max_range_bytes - 1)
            url, headers = url_for_range(start, end)
            entry: dict[str, Any] = {"url": url}
            if headers:
                entry["headers"] = dict(headers)
            entry["class"] = piece.class_
            urls.append(entry)
            start = end + 1
    return {"htsget": {"format": fmt.value, "urls": urls}}
