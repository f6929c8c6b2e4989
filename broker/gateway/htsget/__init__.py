"""The pure core of the htsget 1.3 server: BGZF, BAI/CSI/TBI, headers, region planning, tickets.

No web framework here: the adapter parses the request into :class:`Region` values and a
:class:`Format`, opens the data file as a :class:`RandomReader`, calls :func:`open_indexed`
(cache the result per file) and :func:`plan`, then :func:`build_ticket`. Every refusal is an
:class:`HtsgetError` carrying the htsget error name and HTTP status.

Importing this package starts nothing and imports only the standard library.
"""

from __future__ import annotations

from broker.gateway.htsget.errors import (
    BgzfError,
    CorruptData,
    HeaderFormatError,
    HtsgetError,
    IndexFormatError,
    InvalidInput,
    InvalidRange,
    NotFound,
    UnsupportedFormat,
)
from broker.gateway.htsget.index import Index, IndexKind, read_index
from broker.gateway.htsget.limits import DEFAULT_LIMITS, Limits
from broker.gateway.htsget.plan import (
    UNPLACED,
    ByteRange,
    Format,
    IndexedFile,
    Inline,
    Piece,
    Region,
    check_regions,
    open_indexed,
    parse_format,
    plan,
    plan_request,
)
from broker.gateway.htsget.reader import BytesReader, FileReader, RandomReader
from broker.gateway.htsget.ticket import UrlForRange, build_ticket, data_uri

__all__ = [
    "DEFAULT_LIMITS",
    "UNPLACED",
    "BgzfError",
    "ByteRange",
    "BytesReader",
    "CorruptData",
    "FileReader",
    "Format",
    "HeaderFormatError",
    "HtsgetError",
    "Index",
    "IndexFormatError",
    "IndexKind",
    "IndexedFile",
    "Inline",
    "InvalidInput",
    "InvalidRange",
    "Limits",
    "NotFound",
    "Piece",
    "RandomReader",
    "Region",
    "UnsupportedFormat",
    "UrlForRange",
    "build_ticket",
    "check_regions",
    "data_uri",
    "open_indexed",
    "parse_format",
    "plan",
    "plan_request",
    "read_index",
]
