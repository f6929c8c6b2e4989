"""From an htsget request (format, class, regions) to the ordered pieces of the answer.

The concatenation of the pieces, after fetching each byte range from the data file, is a valid
BGZF file: the header, every record overlapping a requested region, each record once and in
file order, then the EOF block. htsget allows extra records; within the scan budget there are
none (records are selected exactly), beyond it the index chunks are used as they are.

How it stays exact at BGZF boundaries. An index chunk is a range of *virtual* offsets
``[begin, end)`` that starts and ends on record boundaries, but those boundaries may fall inside
a block (``uoffset > 0``); BAM records and VCF lines may also span blocks. Handing the client the
whole first block would give it the tail of an earlier record before the first wanted one, which
no reader can resynchronise on. So:

- a partial first block is inflated, the bytes from ``uoffset`` on are re-compressed as a fresh
  BGZF block and sent inline (a ``data:`` URI);
- the whole blocks after it go out as one byte range of the stored file;
- a partial last block (``end`` with ``uoffset > 0``) is inflated and its bytes before ``uoffset``
  are re-compressed and sent inline; an ``end`` with ``uoffset == 0`` stops before that block.

The header is treated the same way: whole header blocks as a byte range, the part of the block
where the header ends re-compressed inline. Every byte of inflated data therefore reaches the
client exactly once and in order, whatever the block layout. Inline data is bounded: at most two
partial blocks per merged chunk (each under 64 KiB), and consecutive inline pieces are joined
only up to 1 MiB per ``data:`` URI.

Before that, each region's chunks are tightened by bounded record scans
(:mod:`~broker.gateway.htsget.records`): cut after the last record that can overlap, and, before
the first record starting inside the region, only the records reaching into it are kept. Chunks
of all regions are then gathered, sorted and merged when they overlap or touch, so overlapping
regions give each record once, in file order. Empty results still give header and EOF block,
as htsget requires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from broker.gateway.htsget.bgzf import EOF_BLOCK, Block, BlockCache, compress
from broker.gateway.htsget.errors import (
    CorruptData,
    HeaderFormatError,
    IndexFormatError,
    InvalidInput,
    InvalidRange,
    NotFound,
    UnsupportedFormat,
    shown,
)
from broker.gateway.htsget.headers import Header, Reference, read_bam_header, read_vcf_header
from broker.gateway.htsget.index import Chunk, Index, IndexKind, read_index
from broker.gateway.htsget.limits import DEFAULT_LIMITS, Limits
from broker.gateway.htsget.reader import RandomReader
from broker.gateway.htsget.records import ScanBudget, Target, tighten

MAX_POSITION = (1 << 63) - 1
"""Largest ``start``/``end`` accepted (htsget GET says 32-bit unsigned; the adapter may be stricter)."""

UNPLACED = "*"
"""The reads ``referenceName`` for unplaced unmapped reads (htsget 1.3)."""

MAX_INLINE_JOIN = 1 << 20
"""Consecutive inline pieces are joined up to this size; htsget asks inline URIs to stay small."""

PieceClass = Literal["header", "body"]


class Format(StrEnum):
    """Formats this core serves."""

    BAM = "BAM"
    VCF = "VCF"


def parse_format(value: str | None, endpoint: Literal["reads", "variants"]) -> Format:
    """The htsget ``format`` parameter for an endpoint: default BAM/VCF, case-insensitive.

    CRAM and BCF are valid htsget formats this server does not serve; they and anything else
    give :class:`UnsupportedFormat` (htsget: "the requested file format is not supported").
    """
    if value is None:
        return Format.BAM if endpoint == "reads" else Format.VCF
    wanted = Format.BAM if endpoint == "reads" else Format.VCF
    if value.upper() == wanted.value:
        return wanted
    raise UnsupportedFormat("unsupported_format", f"format {shown(value, 20)} is not served on /{endpoint}")


@dataclass(frozen=True, slots=True)
class Region:
    """One htsget region: 0-based ``start`` inclusive, ``end`` exclusive, both optional."""

    reference_name: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start..end`` (inclusive) of the stored data file."""

    start: int
    end: int
    class_: PieceClass


@dataclass(frozen=True, slots=True)
class Inline:
    """BGZF bytes made by the server, sent inline as a ``data:`` URI."""

    data: bytes
    class_: PieceClass


Piece = ByteRange | Inline


@dataclass(frozen=True, slots=True)
class IndexedFile:
    """A data file ready for planning: its header, its index, its references. Cache it per file."""

    format: Format
    header: Header
    index: Index
    references: tuple[Reference, ...]
    """References a region may name: BAM header order; for VCF, ``##contig`` order then index-only names."""
    ref_ids: Mapping[str, int | None]
    """Reference name to index reference id (None: declared in the VCF header, absent from the index)."""
    body_end: int
    """Byte offset where record data ends: the start of the trailing EOF block."""


def open_indexed(
    reader: RandomReader, index: bytes | Index, fmt: Format, *, limits: Limits = DEFAULT_LIMITS
) -> IndexedFile:
    """Read the header of the data file and parse (or take) its index, checking that they match."""
    idx = index if isinstance(index, Index) else read_index(index, limits=limits)
    ref_ids: dict[str, int | None]
    if fmt is Format.BAM:
        if idx.kind is IndexKind.TBI:
            raise IndexFormatError("index_wrong_kind", "a BAM needs a BAI or CSI index, not TBI")
        header = read_bam_header(reader, limits=limits)
        if len(idx.references) != len(header.references):
            raise IndexFormatError(
                "index_mismatch",
                f"the index covers {len(idx.references)} references, the BAM header {len(header.references)}",
            )
        references = header.references
        ref_ids = {ref.name: i for i, ref in enumerate(references)}
    elif fmt is Format.VCF:
        if idx.kind is IndexKind.BAI:
            raise IndexFormatError("index_wrong_kind", "a VCF needs a TBI or CSI index, not BAI")
        if idx.names is None or idx.tabix is None or not idx.tabix.is_vcf:
            raise IndexFormatError("index_mismatch", "the index does not describe a VCF (no VCF tabix configuration)")
        header = read_vcf_header(reader, limits=limits)
        ref_ids = {name: i for i, name in enumerate(idx.names)}
        listed = [Reference(ref.name, ref.length) for ref in header.references]
        declared = {ref.name for ref in listed}
        listed.extend(Reference(name, None) for name in idx.names if name not in declared)
        for ref in header.references:
            ref_ids.setdefault(ref.name, None)
        references = tuple(listed)
    else:  # pragma: no cover - Format is closed
        raise UnsupportedFormat("unsupported_format", f"format {fmt} is not served")
    # A BGZF file ends with the EOF block; one without it is most likely cut short, and a cut
    # last block would reach the client unnoticed inside a byte range, so it is refused.
    body_end = reader.size - len(EOF_BLOCK)
    if body_end < 0 or reader.read(body_end, len(EOF_BLOCK)) != EOF_BLOCK:
        raise CorruptData("data_no_eof", "the data file does not end with the BGZF EOF block (truncated?)")
    if header.end >> 16 > body_end:
        raise HeaderFormatError("header_truncated", "the data file ends inside its header")
    return IndexedFile(fmt, header, idx, references, ref_ids, body_end)


def check_regions(regions: Sequence[Region], *, limits: Limits = DEFAULT_LIMITS, allow_empty: bool = True) -> None:
    """Refuse malformed regions with the htsget error the specification names.

    ``allow_empty=False`` applies the POST rule (``start >= end`` is :class:`InvalidRange`);
    GET only refuses ``start > end``.
    """
    if not regions:
        raise InvalidInput("regions_empty", "the region list is empty")
    if len(regions) > limits.max_regions:
        raise InvalidInput("too_many_regions", f"at most {limits.max_regions} regions may be requested at once")
    for region in regions:
        name = region.reference_name
        if not isinstance(name, str) or not name or len(name.encode("utf-8", "replace")) > limits.max_name_bytes:
            raise InvalidInput("bad_reference_name", "referenceName must be a non-empty string")
        for label, value in (("start", region.start), ("end", region.end)):
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_POSITION:
                raise InvalidInput("bad_position", f"{label} must be an integer between 0 and {MAX_POSITION}")
        if name == UNPLACED and (region.start is not None or region.end is not None):
            raise InvalidInput("unplaced_with_range", "start and end cannot be given with referenceName '*'")
        start, end = region.start, region.end
        if start is not None and end is not None and (start > end or (not allow_empty and start == end)):
            raise InvalidRange("start_after_end", f"start {region.start} is not before end {region.end}")


def plan(
    reader: RandomReader,
    source: IndexedFile,
    *,
    class_: str | None = None,
    regions: Sequence[Region] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Piece]:
    """The pieces of the answer to one htsget request on an opened file.

    ``regions=None`` asks for the whole file; ``class_="header"`` for the header only (no regions
    allowed with it). Errors: :class:`InvalidInput`, :class:`InvalidRange`, :class:`NotFound`,
    and :class:`~broker.gateway.htsget.errors.CorruptData` subclasses for broken stored data.
    """
    if class_ not in (None, "header"):
        raise InvalidInput("bad_class", "class must be 'header' when given")
    blocks = BlockCache(reader)
    header = _header_pieces(source.header)
    if class_ == "header":
        if regions is not None:
            raise InvalidInput("class_with_regions", "class=header cannot be combined with regions")
        return _coalesce([*header, Inline(EOF_BLOCK, "header")])
    end_of_body = source.body_end << 16
    if regions is None:
        chunks: list[Chunk] = [(source.header.end, end_of_body)]
    else:
        check_regions(regions, limits=limits)
        chunks = []
        budget = ScanBudget(limits.max_scan_bytes)
        for region in regions:
            chunks.extend(_region_chunks(source, region, blocks, budget))
    body: list[Piece] = []
    inline = 0
    for begin, end in _merge(chunks, source.header.end, end_of_body):
        pieces = _chunk_pieces(blocks, begin, end, source.body_end)
        inline += sum(len(p.data) for p in pieces if isinstance(p, Inline))
        if inline > limits.max_inline_bytes:
            raise InvalidInput(
                "answer_too_large",
                f"the requested regions need more than {limits.max_inline_bytes} bytes of inline data; "
                "ask for fewer, wider regions",
            )
        body.extend(pieces)
    return _coalesce([*header, *body, Inline(EOF_BLOCK, "body")])


def plan_request(
    reader: RandomReader,
    index: bytes | Index,
    fmt: Format,
    *,
    class_: str | None = None,
    regions: Sequence[Region] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Piece]:
    """:func:`open_indexed` then :func:`plan`, for callers that do not cache the opened file."""
    return plan(reader, open_indexed(reader, index, fmt, limits=limits), class_=class_, regions=regions, limits=limits)


def _region_chunks(source: IndexedFile, region: Region, blocks: BlockCache, budget: ScanBudget) -> list[Chunk]:
    name = region.reference_name
    if name == UNPLACED:
        if source.format is not Format.BAM:
            raise NotFound("unknown_reference", "referenceName '*' (unplaced reads) exists only for reads")
        if source.index.n_no_coor == 0:
            return []
        placed_end = source.index.placed_end()
        start = source.header.end if placed_end is None else max(placed_end, source.header.end)
        return [(start, source.body_end << 16)]
    if name not in source.ref_ids:
        raise NotFound("unknown_reference", f"reference {shown(name)} does not exist in this file")
    ref_id = source.ref_ids[name]
    if ref_id is None:
        return []
    begin = region.start or 0
    end = source.index.max_position if region.end is None else min(region.end, source.index.max_position)
    chunks = source.index.chunks(ref_id, begin, end)
    if not chunks or budget.remaining <= 0:
        return chunks
    target = Target(ref_id, name, begin, end)
    scan_from = max(chunks[0][0], source.header.end)
    end_hint = None
    if region.end is not None:
        end_hint = max(source.index.lower_bound(ref_id, end - 1), scan_from)
        if end_hint >= chunks[-1][1]:
            end_hint = None
    found = tighten(
        blocks,
        scan_from,
        end_hint,
        target,
        want_prefix=begin > 0,
        is_bam=source.format is Format.BAM,
        body_end=source.body_end,
        budget=budget,
    )
    if found.cut is not None:
        chunks = [(b, min(e, found.cut)) for b, e in chunks if b < found.cut]
    if found.resume is not None:
        chunks = found.selected + [(max(b, found.resume), e) for b, e in chunks if e > found.resume]
    return chunks


def _merge(chunks: list[Chunk], header_end: int, end_of_body: int) -> list[Chunk]:
    """Sorted, disjoint chunks inside the body; overlapping or touching chunks are joined.

    Chunks that merely share a block are not joined: the records between them are not wanted,
    and the partial-block pieces cost no extra reads (the block is cached).
    """
    clipped: list[Chunk] = []
    for begin, end in chunks:
        if end > end_of_body:
            raise IndexFormatError("index_past_end", "the index points past the end of the data file")
        begin = max(begin, header_end)
        if end > begin:
            clipped.append((begin, end))
    clipped.sort()
    merged: list[Chunk] = []
    for begin, end in clipped:
        if merged and begin <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return merged


def _checked_uoffset(block: Block, uoffset: int) -> None:
    if uoffset > len(block.data):
        raise IndexFormatError(
            "index_bad_offset", f"the index points {uoffset} bytes into a block of {len(block.data)} bytes"
        )


def _chunk_pieces(blocks: BlockCache, begin: int, end: int, body_end: int) -> list[Piece]:
    cbeg, ubeg = begin >> 16, begin & 0xFFFF
    cend, uend = end >> 16, end & 0xFFFF
    pieces: list[Piece] = []
    if cbeg == cend:
        block = blocks.get(cbeg)
        _checked_uoffset(block, uend)
        if uend > ubeg:
            pieces.append(Inline(compress(block.data[ubeg:uend]), "body"))
        return pieces
    start = cbeg
    if ubeg > 0:
        block = blocks.get(cbeg)
        _checked_uoffset(block, ubeg)
        if ubeg < len(block.data):
            pieces.append(Inline(compress(block.data[ubeg:]), "body"))
        start = block.end
    else:
        blocks.check_start(cbeg)
    if start > cend:
        raise IndexFormatError("index_bad_offset", "an index chunk ends inside the block where it starts")
    if cend > start:
        pieces.append(ByteRange(start, cend - 1, "body"))
    if uend > 0:
        block = blocks.get(cend)
        _checked_uoffset(block, uend)
        pieces.append(Inline(compress(block.data[:uend]), "body"))
    elif cend < body_end:
        blocks.check_start(cend)
    return pieces


def _header_pieces(header: Header) -> list[Piece]:
    cend, uend = header.end >> 16, header.end & 0xFFFF
    pieces: list[Piece] = []
    if cend > 0:
        pieces.append(ByteRange(0, cend - 1, "header"))
    if uend > 0:
        pieces.append(Inline(compress(header.tail), "header"))
    return pieces


def _coalesce(pieces: list[Piece]) -> list[Piece]:
    """Join byte ranges that continue each other and consecutive inline pieces of one class."""
    out: list[Piece] = []
    for piece in pieces:
        last = out[-1] if out else None
        if (
            isinstance(piece, ByteRange)
            and isinstance(last, ByteRange)
            and last.class_ == piece.class_
            and last.end + 1 == piece.start
        ):
            out[-1] = ByteRange(last.start, piece.end, piece.class_)
            continue
        if (
            isinstance(piece, Inline)
            and isinstance(last, Inline)
            and last.class_ == piece.class_
            and len(last.data) + len(piece.data) <= MAX_INLINE_JOIN
        ):
            out[-1] = Inline(last.data + piece.data, piece.class_)
            continue
        out.append(piece)
    return out
